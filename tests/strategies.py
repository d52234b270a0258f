"""Hypothesis strategies shared by the test modules.

Each strategy draws values a real peer could send (or, where named so, values an
attacker could send), so that a property reads as a statement about the protocol.
"""

from __future__ import annotations

from hypothesis import strategies as st

from hmacfs_core.paths import MAX_PATH_BYTES, MAX_SEGMENT_BYTES, UploadPath

# --- upload paths -------------------------------------------------------------------

#: One file or directory name: any text without "/", "\\", C0 controls or DEL, in
#: any script (Hypothesis already leaves out lone surrogates).
path_segments = (
    st.text(
        alphabet=st.characters(
            exclude_characters="/\\\x7f", exclude_categories=("Cc", "Cs")
        ),
        min_size=1,
        max_size=40,
    )
    .filter(lambda segment: segment not in (".", ".."))
    .filter(lambda segment: len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES)
)

#: A valid upload path: one to a few segments, like Prosody's two or ejabberd's
#: three, sometimes the most allowed.
upload_paths = (
    st.lists(path_segments, min_size=1, max_size=16)
    .map(tuple)
    .filter(lambda segments: len("/".join(segments).encode("utf-8")) <= MAX_PATH_BYTES)
    .map(UploadPath)
)

#: Pieces an attacker combines into request targets: traversal, encoded slashes and
#: controls, bad escapes, non-UTF-8, backslashes, next to harmless names.
_hostile_pieces = st.sampled_from(
    [
        b"a",
        b"photo.jpg",
        b"/",
        b".",
        b"..",
        b"%2e",
        b"%2E%2e",
        b"%2f",
        b"%2F",
        b"%5c",
        b"\\",
        b"%00",
        b"\x00",
        b"%0a",
        b"%7f",
        b"%",
        b"%4",
        b"%zz",
        b"%c3%a4",
        b"%c3",
        b"%ff",
        b"\xff",
        b"+",
        b"%20",
        b"%25",
    ]
)

#: Any request-target path hmacfs might receive: arbitrary bytes or a mix of hostile
#: pieces, always starting with "/".
raw_request_paths = st.one_of(
    st.binary(max_size=200),
    st.lists(_hostile_pieces, max_size=12).map(b"".join),
).map(lambda rest: b"/" + rest)

# --- what a signature covers --------------------------------------------------------

#: A shared secret as configured (bytes of any length, HMAC pads or hashes it).
secrets = st.binary(min_size=1, max_size=100)

#: A Content-Length.
sizes = st.integers(min_value=0, max_value=2**53)

#: A Content-Type header value as a client sends it, parameters included.
content_types = st.one_of(
    st.sampled_from(
        [
            "application/octet-stream",
            "image/jpeg",
            "image/png",
            "video/mp4",
            "audio/ogg",
            "text/plain; charset=utf-8",
        ]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
    ),
)

#: An HTTP method as sent on the request line.
methods = st.one_of(
    st.sampled_from(["PUT", "GET", "HEAD", "POST", "PATCH"]),
    st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
)

#: A Unix time for a v3 ``expires``.
expiry_times = st.integers(min_value=0, max_value=2**40)

#: Any run of decimal digits in an ``expires`` parameter, leading zeros included.
expiry_texts = st.from_regex(r"[0-9]+", fullmatch=True)

#: The signature schemes hmacfs speaks.
protocols = st.sampled_from(["v1", "v2", "token", "v3"])
