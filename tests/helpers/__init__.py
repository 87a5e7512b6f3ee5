"""What tests share, in one package (no test imports from a conftest module):

- `journeys`: the one journey builder (definitions, stages, actions, events);
- `enrollments`: enrollments started as the enrolling service starts them, read back;
- `stack`: the API served for real next to a worker, and `eventually`;
- `relay`, `lifecycle`: journeys activated over HTTP, the relay running, contacts seeded;
- `channels`: the SMTP sink, a webhook receiver, templates, and the one send builder;
- `processes`, `histories`: the product's processes started for real, and what their
  workflows' histories say.
"""

WORKSPACE = "default"
