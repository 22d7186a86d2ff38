"""Conversations: message revs, edits, replies, reactions, mentions, DM read markers; room topics and private rooms.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 06:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rooms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topic', sa.String(length=250), server_default='', nullable=False))
        batch_op.add_column(sa.Column('private', sa.Boolean(), server_default=sa.false(), nullable=False))

    # Every existing message gets a rev equal to its id: ids already grow with commit order.
    with op.batch_alter_table('messages', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('rev', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('edited_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('reply_to_id', sa.Integer(), nullable=True))
    op.execute('UPDATE messages SET rev = id')
    with op.batch_alter_table('messages', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.alter_column('rev', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_messages_rev'), ['rev'])
        batch_op.create_foreign_key(
            batch_op.f('fk_messages_reply_to_id_messages'), 'messages', ['reply_to_id'], ['id'], ondelete='SET NULL'
        )

    op.create_table('message_reactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('emoji', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_reactions_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_message_reactions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_reactions')),
    sa.UniqueConstraint('message_id', 'user_id', 'emoji', name='uq_message_reactions_one_each')
    )
    with op.batch_alter_table('message_reactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_reactions_message_id'), ['message_id'], unique=False)

    op.create_table('message_mentions',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_mentions_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_message_mentions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'user_id', name=op.f('pk_message_mentions'))
    )
    with op.batch_alter_table('message_mentions', schema=None) as batch_op:
        batch_op.create_index('ix_message_mentions_user_id_message_id', ['user_id', 'message_id'], unique=False)

    op.create_table('dm_read_markers',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('other_id', sa.Integer(), nullable=False),
    sa.Column('last_read_id', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['other_id'], ['users.id'], name=op.f('fk_dm_read_markers_other_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_dm_read_markers_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'other_id', name=op.f('pk_dm_read_markers'))
    )


def downgrade():
    op.drop_table('dm_read_markers')
    with op.batch_alter_table('message_mentions', schema=None) as batch_op:
        batch_op.drop_index('ix_message_mentions_user_id_message_id')
    op.drop_table('message_mentions')
    with op.batch_alter_table('message_reactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_reactions_message_id'))
    op.drop_table('message_reactions')
    with op.batch_alter_table('messages', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_messages_reply_to_id_messages'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_messages_rev'), type_='unique')
        batch_op.drop_column('reply_to_id')
        batch_op.drop_column('edited_at')
        batch_op.drop_column('rev')
    with op.batch_alter_table('rooms', schema=None) as batch_op:
        batch_op.drop_column('private')
        batch_op.drop_column('topic')
