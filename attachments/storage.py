"""
The "attachments" storage (settings.STORAGES): a local directory by default, an S3-compatible
bucket with ATTACHMENTS_STORAGE=s3. Looked up at each use, so tests can swap it.
"""
import logging
from collections.abc import Iterable

from django.core.files.storage import Storage, storages
from django.db import transaction

logger = logging.getLogger(__name__)


def attachment_storage() -> Storage:
    return storages["attachments"]


def open_for_streaming(key: str):
    """
    A file-like object reading the stored file from its start, in chunks as it is read. For S3
    the object's own HTTP body (django-storages' S3File would first copy the whole object into
    a temporary file).
    """
    storage = attachment_storage()
    bucket = getattr(storage, "bucket", None)
    if bucket is not None:
        from storages.utils import clean_name

        return bucket.Object(storage._normalize_name(clean_name(key))).get()["Body"]
    return storage.open(key, "rb")


def delete_files(keys: Iterable[str]) -> None:
    """Deletes stored files; one that cannot be deleted is logged, not raised (its row is gone)."""
    storage = attachment_storage()
    for key in keys:
        if not key:
            continue
        try:
            storage.delete(key)
        except Exception:
            logger.warning("Could not delete the stored attachment file %s", key, exc_info=True)


def delete_files_on_commit(keys: Iterable[str]) -> None:
    """The files of rows deleted in the current transaction, once it commits (a rollback keeps the rows)."""
    keys = [key for key in keys if key]
    if keys:
        transaction.on_commit(lambda: delete_files(keys), robust=True)
