"""Drive sluice with Google's google-cloud-storage client, as a user would.

tests/storage_python.rs runs this script with STORAGE_EMULATOR_HOST pointing at a server on
the default configuration, where uploads to the bucket `uploads` get a thumbnail in
`thumbnails`. Usage:

    storage_client.py PHOTO OUTPUT_DIR

It uploads PHOTO in a multipart upload and in a resumable one, a 9 MiB file in another
resumable one and a text file in a media upload, waits for both thumbnails and downloads them into
OUTPUT_DIR for the Rust test to decode, then lists, patches and deletes objects and creates a
bucket. Each step asserts what the client returns. The last line of output is a JSON summary.
"""

import json
import os
import sys
import time
from pathlib import Path

from google.api_core import exceptions
from google.cloud import storage
from google.resumable_media.requests import SimpleUpload

# The smallest chunk size the client accepts; the photo needs two chunks of it.
CHUNK_SIZE = 256 * 1024
# Maximum wait for the thumbnailer, far above what it needs.
THUMBNAIL_TIMEOUT_SECS = 120


def wait_for_blob(bucket, name):
    """Return the blob `name` of `bucket` once it exists."""
    deadline = time.monotonic() + THUMBNAIL_TIMEOUT_SECS
    while time.monotonic() < deadline:
        blob = bucket.get_blob(name)
        if blob is not None:
            return blob
        time.sleep(0.2)
    raise AssertionError(f"{name} did not appear in {bucket.name} within {THUMBNAIL_TIMEOUT_SECS} s")


def upload_photos(uploads, photo):
    """Upload the photo twice: multipart and resumable.

    google-cloud-storage 3.17 makes a multipart upload of every file up to 8 MiB whose size
    it knows, whatever the chunk size. A stream without a size goes in a resumable upload,
    in chunks of chunk_size whose Content-Range gives no total until the last one.
    """
    data = photo.read_bytes()
    assert len(data) > CHUNK_SIZE, "the photo must need more than one chunk"

    multipart = uploads.blob("photos/multipart.jpg")
    multipart.metadata = {"camera": "test"}
    multipart.upload_from_filename(str(photo))
    assert multipart.size == len(data), multipart.size
    assert multipart.content_type == "image/jpeg", multipart.content_type
    assert multipart.metadata == {"camera": "test"}, multipart.metadata
    assert multipart.generation > 0

    resumable = uploads.blob("photos/resumable.jpg", chunk_size=CHUNK_SIZE)
    with photo.open("rb") as stream:
        resumable.upload_from_file(stream, content_type="image/jpeg")
    assert resumable.size == len(data), resumable.size
    assert resumable.crc32c == multipart.crc32c
    assert resumable.md5_hash == multipart.md5_hash
    return data


def upload_large_file(uploads, scratch):
    """Upload a file over 8 MiB, which the client sends in a resumable upload whose chunks
    give the total size, and download it again."""
    path = scratch / "large.bin"
    data = os.urandom(9 * 1024 * 1024 + 123)
    path.write_bytes(data)
    blob = uploads.blob("large/random.bin", chunk_size=4 * CHUNK_SIZE)
    blob.upload_from_filename(str(path))
    assert blob.size == len(data), blob.size
    assert uploads.blob("large/random.bin").download_as_bytes() == data
    blob.delete()


def upload_media(client, uploads):
    """Upload a text file with uploadType=media, which the Blob API never uses."""
    url = (
        f"{client._connection.API_BASE_URL}/upload/storage/v1/b/{uploads.name}/o"
        "?uploadType=media&name=notes/readme.txt"
    )
    response = SimpleUpload(url).transmit(client._http, b"hello from media", "text/plain")
    assert response.status_code == 200, response.text
    blob = uploads.get_blob("notes/readme.txt")
    assert blob.content_type == "text/plain", blob.content_type
    assert blob.download_as_bytes() == b"hello from media"


def check_downloads(uploads, thumbnails, data, output):
    """Download the originals and the thumbnails, and save the thumbnails for the Rust test."""
    original = uploads.get_blob("photos/resumable.jpg")
    # The client checks the X-Goog-Hash header against the bytes it downloads.
    assert original.download_as_bytes() == data
    assert uploads.blob("photos/multipart.jpg").download_as_bytes() == data
    assert original.download_as_bytes(start=10, end=19) == data[10:20]

    saved = []
    for name in ["photos/multipart.jpg", "photos/resumable.jpg"]:
        thumbnail = wait_for_blob(thumbnails, name)
        assert thumbnail.metadata["sourceObject"] == name, thumbnail.metadata
        assert thumbnail.content_type in ("image/jpeg", "image/png"), thumbnail.content_type
        path = output / name.replace("/", "_")
        thumbnail.download_to_filename(str(path))
        assert path.stat().st_size == thumbnail.size
        saved.append(str(path))
    return saved


def check_listing(client, uploads):
    """List with a prefix and a delimiter, which groups the folder `photos/2024/`."""
    uploads.blob("photos/2024/a.txt").upload_from_string(b"a")
    uploads.blob("photos/2024/b.txt").upload_from_string(b"b")

    listing = client.list_blobs(uploads, prefix="photos/", delimiter="/")
    names = [blob.name for blob in listing]
    assert names == ["photos/multipart.jpg", "photos/resumable.jpg"], names
    assert listing.prefixes == {"photos/2024/"}, listing.prefixes

    nested = [blob.name for blob in client.list_blobs(uploads, prefix="photos/2024/")]
    assert nested == ["photos/2024/a.txt", "photos/2024/b.txt"], nested


def check_patch_and_delete(uploads):
    """Patch custom metadata, then delete objects."""
    blob = uploads.get_blob("photos/2024/a.txt")
    assert blob.metageneration == 1
    blob.metadata = {"reviewed": "yes"}
    blob.patch()
    assert blob.metageneration == 2, blob.metageneration
    assert uploads.get_blob("photos/2024/a.txt").metadata == {"reviewed": "yes"}

    blob.delete()
    assert uploads.get_blob("photos/2024/a.txt") is None
    assert not uploads.blob("photos/2024/a.txt").exists()
    try:
        uploads.blob("photos/2024/a.txt").download_as_bytes()
    except exceptions.NotFound as err:
        assert "not found" in err.message, err.message
    else:
        raise AssertionError("downloading a deleted object succeeded")


def check_buckets(client):
    """Create a bucket, use it, and read a missing one."""
    created = client.create_bucket("py-created")
    assert created.name == "py-created"
    assert client.get_bucket("py-created").versioning_enabled is False
    created.blob("x.txt").upload_from_string(b"x")
    assert created.get_blob("x.txt").size == 1
    assert "py-created" in [bucket.name for bucket in client.list_buckets()]

    try:
        client.create_bucket("py-created")
    except exceptions.Conflict:
        pass
    else:
        raise AssertionError("creating an existing bucket succeeded")

    try:
        client.get_bucket("no-such-bucket")
    except exceptions.NotFound as err:
        assert "no-such-bucket" in err.message, err.message
        assert err.errors[0]["reason"] == "notFound", err.errors
    else:
        raise AssertionError("getting a missing bucket succeeded")


def main():
    photo, output = Path(sys.argv[1]), Path(sys.argv[2])
    assert os.environ.get("STORAGE_EMULATOR_HOST"), "STORAGE_EMULATOR_HOST is not set"
    client = storage.Client(project="sluice-test")
    uploads = client.get_bucket("uploads")
    thumbnails = client.bucket("thumbnails")

    data = upload_photos(uploads, photo)
    upload_large_file(uploads, output)
    upload_media(client, uploads)
    saved = check_downloads(uploads, thumbnails, data, output)
    check_listing(client, uploads)
    check_patch_and_delete(uploads)
    check_buckets(client)
    print(json.dumps({"thumbnails": saved}))


if __name__ == "__main__":
    main()
