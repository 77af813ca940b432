"""The audit trail: one row per mutating request and per automatic action, and who may read it (docs/audit.md).

`actions.py` names what is recorded, `recorder.py` writes rows (in the caller's transaction or its own),
`query.py` reads pages of them under the caller's role; the HTTP side lives in web/audit_middleware.py and
router.py.
"""
