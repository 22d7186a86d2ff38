"""Files and search: attachments, and the full-text index of message bodies.

SQLite gets an FTS5 table with external content (messages) and the triggers that keep it in step;
PostgreSQL a GIN index on to_tsvector('simple', body). Both are built here for the messages that
already exist. A later migration that rebuilds the messages table on SQLite (batch "move and copy")
drops the triggers with it and must create them again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 06:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SQLITE_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(body, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
    # Index every message stored before this migration.
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)
POSTGRES_SEARCH_DDL = (
    "CREATE INDEX ix_messages_body_fts ON messages USING gin (to_tsvector('simple', body))",
)


def upgrade():
    op.create_table('attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uploader_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('thumbnail_sha256', sa.String(length=64), nullable=True),
    sa.Column('thumbnail_type', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_attachments_message_id_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['uploader_id'], ['users.id'], name=op.f('fk_attachments_uploader_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments'))
    )
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachments_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_thumbnail_sha256'), ['thumbnail_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_attachments_uploader_id'), ['uploader_id'], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for statement in SQLITE_SEARCH_DDL:
            op.execute(statement)
    elif dialect == 'postgresql':
        for statement in POSTGRES_SEARCH_DDL:
            op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'sqlite':
        for trigger in ('messages_fts_insert', 'messages_fts_delete', 'messages_fts_update'):
            op.execute(f'DROP TRIGGER IF EXISTS {trigger}')
        op.execute('DROP TABLE IF EXISTS messages_fts')
    elif dialect == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_messages_body_fts')

    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachments_uploader_id'))
        batch_op.drop_index(batch_op.f('ix_attachments_thumbnail_sha256'))
        batch_op.drop_index(batch_op.f('ix_attachments_sha256'))
        batch_op.drop_index(batch_op.f('ix_attachments_message_id'))
        batch_op.drop_index(batch_op.f('ix_attachments_created_at'))

    op.drop_table('attachments')
