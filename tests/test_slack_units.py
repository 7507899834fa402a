"""Small pure pieces of the Slack side: which files count as recordings and the checks before a download."""
from __future__ import annotations

import pytest

from bot.errors import MediaError
from bot.services.recordings import media_files
from bot.slack.enroll import EnrollRequest, parse_enroll
from bot.summary.files import check_file, check_media, is_media


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



def test_a_clip_from_the_modal_is_checked_by_what_its_metadata_shows():
    """A file input's file has no download URL yet: only its type and size can be refused, and no stand-in URL
    is needed to get past a check it cannot fail."""
    check_media({"name": "me.m4a", "mimetype": "audio/mp4", "filetype": "m4a", "size": 10_000}, max_bytes=1024**2)
    with pytest.raises(MediaError) as big:
        check_media({"name": "me.m4a", "mimetype": "audio/mp4", "filetype": "m4a", "size": 10**7}, max_bytes=1024**2)
    assert big.value.code == "too_large"
    with pytest.raises(MediaError) as pdf:
        check_media({"name": "cv.pdf", "mimetype": "application/pdf", "filetype": "pdf", "size": 1}, max_bytes=1024)
    assert pdf.value.code == "not_audio"


@pytest.mark.parametrize("text, request_", [
    ("", EnrollRequest("enroll")), ("  ME ", EnrollRequest("enroll")),
    ("status", EnrollRequest("status")), ("status please", EnrollRequest("unknown", "status")),
    ("delete", EnrollRequest("delete mine")), ("delete ALL", EnrollRequest("delete mine")),
    ("delete <@UME|me>", EnrollRequest("delete mine")),
    ("delete <@UJANE|jane>", EnrollRequest("delete someone's", "UJANE")),
    ("delete @jane", EnrollRequest("delete someone's", "")),
    ("delete r&amp;d room", EnrollRequest("delete named", "r&d room")),
    ("help", EnrollRequest("help")), ("Bogus words", EnrollRequest("unknown", "bogus")),
])
def test_enroll_text_parses_to_one_request(text, request_):
    assert parse_enroll(text, "UME") == request_
