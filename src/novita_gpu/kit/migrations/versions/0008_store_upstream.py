"""upstream_listing.upstream: which Novita the store's instances live in

Replicas share a store only when they share a Novita: an emulator-mode replica (its own private emulated
account) joining replicas of a real account would see their instances as gone, and they its. The first
process to start records its Novita here; one of another Novita is refused while the store holds live
instances (store_upstream.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("upstream_listing") as batch:
        batch.add_column(sa.Column("upstream", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upstream_listing") as batch:
        batch.drop_column("upstream")
