"""Mentions an edit dropped stay recorded as not current, and who was told is remembered, so a user is told of a message once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:45:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('message_mentions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current', sa.Boolean(), server_default=sa.true(), nullable=False))
        # Mentions stored before this revision were announced when they were posted.
        batch_op.add_column(sa.Column('notified', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade():
    op.execute(sa.text('DELETE FROM message_mentions WHERE NOT current'))
    with op.batch_alter_table('message_mentions', schema=None) as batch_op:
        batch_op.drop_column('notified')
        batch_op.drop_column('current')
