"""A per-user session version: signing out and bans raise it, ending every session and token issued before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 09:20:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        # 0 stamps sessions exactly as before this revision, so upgrading signs nobody out.
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    # SQLite drops the column in place (3.35+): a batch rebuild would drop and copy `users`, which
    # foreign keys from every other table refuse while the app's connections enforce them.
    op.drop_column('users', 'session_version')
