"""Small pure pieces of the Slack side: which files count as recordings and the checks before a download."""
from __future__ import annotations

import pytest

from bot.errors import MediaError
from bot.services.recordings import media_files
from bot.slack_api.files import check_file, is_media


def file(name: str, mimetype: str, size: int = 1000, **kw) -> dict:
    return {"id": "F1", "name": name, "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1], "size": size,
            "url_private_download": "https://files.example/F1"} | kw


def test_media_detection():
    assert is_media(file("a.m4a", "audio/mp4")) and is_media(file("b.mov", "video/quicktime"))
    assert is_media(file("c.opus", "application/octet-stream"))
    assert not is_media(file("d.pdf", "application/pdf")) and not is_media(file("e.png", "image/png"))


def test_bot_uploads_and_other_files_are_ignored():
    event = {"user": "U1", "files": [file("a.wav", "audio/wav"), file("chart.png", "image/png")]}
    assert [f["name"] for f in media_files(event, "UBOT")] == ["a.wav"]
    assert media_files(event | {"user": "UBOT"}, "UBOT") == []
    assert media_files(event | {"bot_id": "B1"}, "UBOT") == []


@pytest.mark.parametrize(("f", "code", "words"), [
    (file("notes.pdf", "application/pdf"), "not_audio", "not audio or video"),
    (file("huge.mp4", "video/mp4", size=3 * 1024**3), "too_large", "limit"),
    (file("link.mp3", "audio/mpeg", mode="external", url_private_download=None), "not_audio", "external"),
])
def test_checks_before_download(f, code, words):
    with pytest.raises(MediaError) as err:
        check_file(f, max_bytes=1024**3)
    assert err.value.code == code and words in err.value.message

