"""Row leases: how a worker, in any replica, takes rows to work on, keeps them, and gives them back.

A leased row carries `lease_token` (new for each claim) and `lease_expires_at`; instance rows also carry
`lease_owner`, the worker holding them, so a worker may take back its own rows before they lapse. A row
is free when never leased or when its lease has expired: a crashed replica's rows are taken over after
one lease period. Every write a worker makes to a leased row names its token in the WHERE clause
(`held`): if the lease lapsed and another replica took the row meanwhile, the write changes nothing
(rowcount 0) and the worker drops what it was doing. A claim is one UPDATE: PostgreSQL takes the rows'
locks, SQLite has one writer at a time, so two replicas never both win a row.

These build statements; `runner.py` runs them for a worker (claim, renew, release, the guarded write).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, or_, update
from sqlalchemy.orm import InstrumentedAttribute


class LeasedTable:
    def __init__(self, model: Any, *, owner: str | None = None) -> None:
        """`model`: a mapped class with `id`, `lease_token`, `lease_expires_at` (and `lease_owner` when
        `owner` names this worker)."""
        self.model = model
        self.owner = owner
        self._id: InstrumentedAttribute[Any] = model.id
        self._token: InstrumentedAttribute[Any] = model.lease_token
        self._expires: InstrumentedAttribute[Any] = model.lease_expires_at
        self._owner: InstrumentedAttribute[Any] | None = model.lease_owner if owner is not None else None

    def free(self, now: Any) -> ColumnElement[bool]:
        """Rows this worker may claim at `now`: never leased, lapsed, or (with an owner) already its own."""
        conditions = [self._expires.is_(None), self._expires < now]
        if self._owner is not None:
            conditions.append(self._owner == self.owner)
        return or_(*conditions)

    def held(self, token: str) -> ColumnElement[bool]:
        """The guard of a write by the worker holding `token`."""
        return self._token == token

    def claim(
        self, ids: Sequence[Any], *where: ColumnElement[bool], now: datetime, token: str, until: datetime
    ) -> Update:
        """Lease the rows of `ids` that are free (and match `where`) under `token` until `until`; read back
        the rows holding `token` to know which were won."""
        values: dict[str, Any] = {"lease_token": token, "lease_expires_at": until}
        if self._owner is not None:
            values["lease_owner"] = self.owner
        return self._update(and_(self._id.in_(ids), self.free(now), *where), values)

    def renew(self, ids: Sequence[Any], *, until: datetime, token: str | None = None) -> Update:
        """Extend this worker's leases of `ids` (work still in flight): with an owner, every one it holds
        whatever its token; without, those held under `token`."""
        if self._owner is not None:
            mine = self._owner == self.owner
        else:
            assert token is not None, "without a lease owner, only the token tells which rows are this worker's"
            mine = self.held(token)
        return self._update(and_(self._id.in_(ids), mine), {"lease_expires_at": until})

    def release(self, token: str, ids: Sequence[Any] | None = None) -> Update:
        """Give back the rows leased under `token` (only `ids` of them, when given)."""
        condition = self.held(token) if ids is None else and_(self._id.in_(ids), self.held(token))
        return self._update(condition, self._cleared())

    def release_mine(self) -> Update:
        """Give back every row this worker holds (on shutdown), so another replica takes them at once."""
        assert self._owner is not None, "only tables with a lease owner know which rows are this worker's"
        return self._update(self._owner == self.owner, self._cleared())

    def _cleared(self) -> dict[str, Any]:
        values: dict[str, Any] = {"lease_token": None, "lease_expires_at": None}
        if self._owner is not None:
            values["lease_owner"] = None
        return values

    def _update(self, condition: ColumnElement[bool], values: dict[str, Any]) -> Update:
        return update(self.model).where(condition).values(**values).execution_options(synchronize_session=False)
