"""schemathesis hooks of test_openapi_fuzz.py (loaded by the CLI through SCHEMATHESIS_HOOKS).

The document states every rule of a request's form, so a request it allows must never be refused as
malformed (VALIDATION_ERROR, INVALID_JSON, INVALID_CURSOR: schemathesis' positive_data_acceptance).
A few refusals depend on state the document cannot hold, and are dropped here, by their codes only.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

STATE_DEPENDENT_CODES = frozenset(
    {
        "UNKNOWN_PRODUCT",  # productName: what Novita sells now
        "UNKNOWN_TEMPLATE",  # templateId: the templates that exist now
        "UNKNOWN_REGION",  # region: the clusters that exist now
        "NO_OFFER_WITHIN_PRICE",  # maxPricePerHour against today's prices
        "INVALID_WEBHOOK_URL",  # the SSRF guard's verdict on the host (settings: allowed hosts, networks)
        "PAYLOAD_TOO_LARGE",  # MAX_BODY_BYTES: 100 envs of 4095 characters are allowed, not in one body
        "BUDGET_EXCEEDED",  # a budget the run itself set (PUT /api/budget) and its instances then spent
        "REGION_WITHOUT_NETWORK_STORAGE",  # region: which clusters support network storage now
        "UNKNOWN_STORAGE",  # storageId: the storages at Novita now that no volume stands for
        "VOLUME_NOT_FOUND",  # volumes: the volumes that exist now
        "VOLUME_NOT_AVAILABLE",  # volumes: one still being created
        "VOLUME_SHRINK",  # sizeGb against the volume's size now
        "VOLUMES_IN_DIFFERENT_REGIONS",  # volumes: where each one is
        "VOLUME_REGION_MISMATCH",  # region against the volume's
        "PRODUCT_NOT_IN_VOLUME_REGION",  # productName: what the volume's region sells now
        "NETWORK_STORAGE_TOO_LARGE",  # sizeGb against what the region has left (Novita's refusal of a grow)
    }
)


def _error_code(body: bytes) -> str | None:
    try:
        parsed: Any = json.loads(body)
        return str(parsed["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a well-formed request refused for the state of the world, a malformed request
    refused as too large before it was read (413 is a refusal; schemathesis expects 4xx but 413), and a
    volume read back as being deleted after its DELETE was accepted."""
    code = getattr(failure, "code", None)
    if code == "ST202":  # "Schema-valid request rejected"
        return _error_code(response.content) not in STATE_DEPENDENT_CODES
    if code == "ST201":  # "Schema-violating request accepted"
        return response.status_code != 413
    if code == "ST301":  # "Deleted resource still available"
        # A volume's DELETE is 202 Accepted: the storage is deleted at Novita afterwards, and the volume stays
        # readable as `deleting`, then `deleted` (as an instance stays readable as `terminated`).
        return not (case.path.startswith("/api/volumes") and _status(response.content) in ("deleting", "deleted"))
    return True


def _status(body: bytes) -> str | None:
    try:
        parsed: Any = json.loads(body)
        return str(parsed["status"])
    except (ValueError, KeyError, TypeError):
        return None
