"""Custom search attributes operators query in the Temporal UI (docs/design.md, "The enrollment
workflow")."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

JOURNEY_ID = SearchAttributeKey.for_keyword("JourneyId")
CONTACT_ID = SearchAttributeKey.for_keyword("ContactId")
JOURNEY_STAGE = SearchAttributeKey.for_keyword("JourneyStage")
ENROLLMENT_OUTCOME = SearchAttributeKey.for_keyword("EnrollmentOutcome")
JOURNEY_VERSION = SearchAttributeKey.for_int("JourneyVersion")
WORKSPACE = SearchAttributeKey.for_keyword("Workspace")

ALL_KEYS = (JOURNEY_ID, CONTACT_ID, JOURNEY_STAGE, ENROLLMENT_OUTCOME, JOURNEY_VERSION, WORKSPACE)

# name -> kind as the dev server's --search-attribute flag spells it
SEARCH_ATTRIBUTES: dict[str, str] = {
    "JourneyId": "Keyword",
    "ContactId": "Keyword",
    "JourneyStage": "Keyword",
    "EnrollmentOutcome": "Keyword",
    "JourneyVersion": "Int",
    "Workspace": "Keyword",
}
