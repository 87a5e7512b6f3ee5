"""Docker does not run on the build machines: check the compose file's shape instead."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import yaml

from shared.search_attributes import SEARCH_ATTRIBUTES
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_nurture_variable_in_compose_is_a_real_setting() -> None:
    fields = {f"NURTURE_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for service in _compose()["services"].values():
        for name in service.get("environment") or {}:
            if name.startswith("NURTURE_"):
                seen.add(name)
                assert name in fields, f"{name} is not a Settings field"
    assert {"NURTURE_TEMPORAL_ADDRESS", "NURTURE_DATABASE_URL"} <= seen


def test_compose_has_every_service_the_app_needs() -> None:
    services = _compose()["services"]
    assert {"temporal", "temporal-ui", "postgres", "migrate", "api", "worker"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["api"]["command"] == ["api"] and services["worker"]["command"] == ["worker"]
    # the worker must not start before the schema exists
    assert "migrate" in services["worker"]["depends_on"]
    assert (ROOT / "Dockerfile").exists()


def test_compose_registers_every_search_attribute() -> None:
    command = " ".join(_compose()["services"]["temporal-search-attributes"]["command"])
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert f"--name {name} --type {kind}" in command


def test_the_image_holds_every_package_and_pins_its_python() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = pyproject.split("include = [", 1)[1].split("]", 1)[0]
    packages = [name.strip().strip('"').rstrip("*") for name in include.split(",")]
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, package
    base = next(line for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert base.count(".") >= 2, f"pin the patch version: {base}"


def test_temporal_and_its_ui_are_published_on_loopback_only() -> None:
    services = _compose()["services"]
    for name in ("temporal", "temporal-ui"):
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_lock_pins_every_dependency_with_hashes_and_is_what_runs() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pins = _locked()
    for requirement in metadata.requires("nurture") or []:
        if "extra ==" in requirement:
            continue  # the test tools are not part of the image
        name = canonical(requirement.split(">")[0].split("=")[0].split("<")[0].split(";")[0])
        assert name in pins, f"{name} is not in requirements.lock: run scripts/lock.sh"
    entries = [e for e in lock.split("\n") if "==" in e and not e.startswith((" ", "#"))]
    assert all(e.endswith("\\") for e in entries), "every pin carries its hashes"
    for name, version in pins.items():
        assert metadata.version(name) == version, f"{name}: installed ≠ locked"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
