"""upstream_listing: Novita's instance list, shared by replicas so that one of them lists Novita at a time

One row (id 1): the latest listing as the few fields the reconciler compares (zlib-compressed JSON), when
it began and ended, and a lease on the right to list next (the replica listing now, until when).
"""

import sqlalchemy as sa
from alembic import op

import novita_gpu.kit.db

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    table = op.create_table(
        "upstream_listing",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("taken_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.Column("listed_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("lister", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", novita_gpu.kit.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1}])


def downgrade() -> None:
    op.drop_table("upstream_listing")
