"""Reading the configuration file: strict types, every problem at once, defaults."""

from pathlib import Path

import cattrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hmacfs_core.config import (
    Config,
    ConfigError,
    ConfigProblem,
    DownloadsConfig,
    ListenAddress,
    LoggingConfig,
    SecurityConfig,
    ServerConfig,
    UploadsConfig,
    default_config,
    load_config,
    make_converter,
    parse_config,
    resolve_secret,
)
from hmacfs_core.units import KiB, MiB

#: TOML values of every kind, as tomli returns them.
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)

#: Hosts an operator listens on: names, IPv4 and IPv6 addresses.
listen_hosts = st.sampled_from(
    ["127.0.0.1", "0.0.0.0", "localhost", "upload.example.org", "::1", "::", "fe80::1"]
)


def problems_of(text: str) -> dict[str, str]:
    """The problems ``parse_config`` finds in ``text``, by where they are."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return {problem.where: problem.message for problem in caught.value.problems}


def test_an_empty_file_gives_the_defaults() -> None:
    assert parse_config("") == default_config() == Config()


def test_the_defaults_are_the_documented_ones() -> None:
    config = default_config()

    assert config.server == ServerConfig(
        listen_address=ListenAddress("127.0.0.1", 8080),
        base_path="/",
        storage_path=Path("hmacfs-data"),
        max_upload_size=100 * MiB,
        idle_timeout=60.0,
        shutdown_grace=30.0,
    )
    assert config.security == SecurityConfig(
        secret=None,
        secret_file=None,
        protocols=("v1", "v2", "token", "v3"),
        v2_type_from_extension=False,
    )
    assert config.uploads == UploadsConfig(
        write_buffer_size=512 * KiB, read_size=256 * KiB
    )
    assert config.downloads == DownloadsConfig(allowed_origins=(), chunk_size=1 * MiB)
    assert config.logging == LoggingConfig(level="info")


def test_every_key_is_read() -> None:
    config = parse_config(
        """
        [server]
        listen_address = "[::1]:5443"
        base_path = "/upload/"
        storage_path = "/srv/hmacfs"
        max_upload_size = "1GiB"
        idle_timeout = "2m"
        shutdown_grace = 5

        [security]
        secret = "s3cret"
        protocols = ["v3", "token"]
        v2_type_from_extension = true

        [uploads]
        write_buffer_size = "256KiB"

        [downloads]
        allowed_origins = ["https://chat.example.org", "http://localhost:8080"]
        chunk_size = 65536

        [logging]
        level = "debug"
        """
    )

    assert config == Config(
        server=ServerConfig(
            listen_address=ListenAddress("::1", 5443),
            base_path="/upload/",
            storage_path=Path("/srv/hmacfs"),
            max_upload_size=1024 * MiB,
            idle_timeout=120.0,
            shutdown_grace=5.0,
        ),
        security=SecurityConfig(
            secret="s3cret", protocols=("v3", "token"), v2_type_from_extension=True
        ),
        uploads=UploadsConfig(write_buffer_size=256 * KiB),
        downloads=DownloadsConfig(
            allowed_origins=("https://chat.example.org", "http://localhost:8080"),
            chunk_size=64 * KiB,
        ),
        logging=LoggingConfig(level="debug"),
    )


@pytest.mark.parametrize(
    ("written", "size"),
    [("10485760", 10 * MiB), ('"10MB"', 10 * MiB), ('"1.5KiB"', 1536)],
)
def test_a_size_is_a_number_of_bytes_or_a_size_with_a_unit(
    written: str, size: int
) -> None:
    config = parse_config(f"[server]\nmax_upload_size = {written}")

    assert config.server.max_upload_size == size


@pytest.mark.parametrize(
    ("written", "seconds"), [("90", 90.0), ("2.5", 2.5), ('"1m30s"', 90.0)]
)
def test_a_duration_is_a_number_of_seconds_or_a_duration_with_units(
    written: str, seconds: float
) -> None:
    config = parse_config(f"[server]\nidle_timeout = {written}")

    assert config.server.idle_timeout == seconds


def test_an_invalid_size_is_reported_with_its_key_and_the_accepted_forms() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[server]\nmax_upload_size = "ten MB"', source="hmacfs.toml")

    assert str(caught.value) == (
        "hmacfs.toml: server.max_upload_size: invalid size 'ten MB' "
        "(use a number of bytes or e.g. '64KB', '10MB', '1.5GiB')"
    )


def test_a_boolean_is_not_a_size() -> None:
    problems = problems_of("[uploads]\nwrite_buffer_size = true")

    assert problems == {
        "uploads.write_buffer_size": (
            "expected a number of bytes or a size such as '10MB', got true"
        )
    }


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("-1", "negative"),
        ('"1.5B"', "not a whole number of bytes"),
        ("1.5", "got the float 1.5"),
    ],
)
def test_a_size_that_is_not_a_whole_positive_number_of_bytes_is_refused(
    written: str, message: str
) -> None:
    problems = problems_of(f"[server]\nmax_upload_size = {written}")

    assert message in problems["server.max_upload_size"]


def test_the_string_false_is_not_a_boolean() -> None:
    problems = problems_of('[security]\nv2_type_from_extension = "false"')

    assert problems["security.v2_type_from_extension"] == (
        "expected true or false, got the string 'false'"
    )


@pytest.mark.parametrize(
    ("value", "given"),
    [(1, "the integer 1"), ("true", "the string 'true'"), ([True], "an array")],
)
def test_only_true_and_false_are_booleans(value: object, given: str) -> None:
    with pytest.raises(TypeError, match=f"expected true or false, got {given}"):
        make_converter().structure(value, bool)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (80.9, "the float 80.9"),
        (80.0, "the float 80.0"),
        (True, "true"),
        ("80", "the string '80'"),
    ],
)
def test_only_integers_are_integers(value: object, kind: str) -> None:
    with pytest.raises(TypeError, match=f"expected an integer, got {kind}"):
        make_converter().structure(value, int)


@pytest.mark.parametrize("value", [False, "1.5"])
def test_only_numbers_are_floats(value: object) -> None:
    with pytest.raises(TypeError, match="expected a number"):
        make_converter().structure(value, float)


def test_an_integer_is_accepted_as_a_float() -> None:
    assert make_converter().structure(3, float) == 3.0


@pytest.mark.parametrize("value", [1, True, 1.5, ["a"]])
def test_only_strings_are_strings(value: object) -> None:
    with pytest.raises(TypeError, match="expected a string"):
        make_converter().structure(value, str)


@pytest.fixture(scope="module")
def converter() -> cattrs.Converter:
    return make_converter()


@given(value=toml_scalars.filter(lambda value: not isinstance(value, bool)))
def test_nothing_but_a_boolean_passes_for_a_boolean(
    converter: cattrs.Converter, value: object
) -> None:
    with pytest.raises(TypeError, match="^expected true or false, got "):
        converter.structure(value, bool)


@given(value=toml_scalars.filter(lambda value: type(value) is not int))
def test_nothing_but_an_integer_passes_for_an_integer(
    converter: cattrs.Converter, value: object
) -> None:
    with pytest.raises(TypeError, match="^expected an integer, got "):
        converter.structure(value, int)


@pytest.mark.parametrize(
    ("written", "host", "port"),
    [
        ('"127.0.0.1:9000"', "127.0.0.1", 9000),
        ('"upload.example.org:443"', "upload.example.org", 443),
        ('"[::1]:8080"', "::1", 8080),
        ('"[::]:8080"', "::", 8080),
        ('":8080"', "0.0.0.0", 8080),
        ('"8080"', "0.0.0.0", 8080),
        ("8080", "0.0.0.0", 8080),
        ('"localhost:0"', "localhost", 0),
        ('"0.0.0.0:65535"', "0.0.0.0", 65535),
    ],
)
def test_listen_address_forms(written: str, host: str, port: int) -> None:
    config = parse_config(f"[server]\nlisten_address = {written}")

    assert config.server.listen_address == ListenAddress(host, port)


@pytest.mark.parametrize(
    "written",
    [
        '"abc"',
        '"localhost:abc"',
        '"localhost:"',
        '"::1:8080"',
        '"[::1]"',
        '"[::1]:abc"',
        '"localhost:70000"',
        '"my host:80"',
        "65536",
        "-1",
        "80.9",
        "true",
        '"80 80"',
    ],
)
def test_a_listen_address_that_is_not_one_is_refused(written: str) -> None:
    problems = problems_of(f"[server]\nlisten_address = {written}")

    assert list(problems) == ["server.listen_address"]


def test_a_port_that_is_not_a_number_names_the_accepted_forms() -> None:
    problems = problems_of('[server]\nlisten_address = "abc"')

    assert problems["server.listen_address"] == (
        "invalid listen address 'abc' "
        "(use 'HOST:PORT', '[::1]:8080', ':8080' or a port number)"
    )


def test_an_unbracketed_ipv6_address_is_refused_with_a_hint() -> None:
    problems = problems_of('[server]\nlisten_address = "::1:8080"')

    assert "'[::1]:8080'" in problems["server.listen_address"]


@given(listen_hosts, st.integers(min_value=0, max_value=65535))
def test_a_listen_address_reads_back_from_its_text(host: str, port: int) -> None:
    address = ListenAddress(host, port)

    assert ListenAddress.parse(str(address)) == address


def test_an_ipv6_listen_address_is_written_in_brackets() -> None:
    assert str(ListenAddress("::1", 8080)) == "[::1]:8080"
    assert str(ListenAddress("127.0.0.1", 8080)) == "127.0.0.1:8080"


@pytest.mark.parametrize(
    ("written", "base_path"),
    [
        ("", "/"),
        ("/", "/"),
        ("files", "/files/"),
        ("/files", "/files/"),
        ("files/", "/files/"),
        ("/files/", "/files/"),
        ("/a/b", "/a/b/"),
    ],
)
def test_base_path_always_starts_and_ends_with_a_slash(
    written: str, base_path: str
) -> None:
    config = parse_config(f'[server]\nbase_path = "{written}"')

    assert config.server.base_path == base_path


@pytest.mark.parametrize("written", ["/up?x", "/up#x", "//", "/a//b", "//files"])
def test_base_path_must_be_a_plain_url_path(written: str) -> None:
    problems = problems_of(f'[server]\nbase_path = "{written}"')

    assert list(problems) == ["server.base_path"]


def test_base_path_is_normalised_when_built_in_code_too() -> None:
    assert ServerConfig(base_path="files").base_path == "/files/"


def test_relative_paths_are_resolved_against_the_config_directory(
    tmp_path: Path,
) -> None:
    config = parse_config(
        '[server]\nstorage_path = "data"\n[security]\nsecret_file = "keys/secret"',
        base_dir=tmp_path,
    )

    assert config.server.storage_path == tmp_path / "data"
    assert config.security.secret_file == tmp_path / "keys" / "secret"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    config = parse_config(
        '[server]\nstorage_path = "/srv/data"\n[security]\nsecret_file = "/etc/s"',
        base_dir=tmp_path,
    )

    assert config.server.storage_path == Path("/srv/data")
    assert config.security.secret_file == Path("/etc/s")


def test_without_a_base_directory_relative_paths_stay_relative() -> None:
    config = parse_config('[server]\nstorage_path = "data"')

    assert config.server.storage_path == Path("data")


def test_a_loaded_file_resolves_relative_paths_against_its_own_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hmacfs.toml").write_text('[server]\nstorage_path = "data"')
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("etc/hmacfs.toml"))

    assert config.server.storage_path == tmp_path / "etc" / "data"


def test_the_default_storage_path_is_relative_to_the_working_directory() -> None:
    assert not default_config().server.storage_path.is_absolute()


def test_a_path_cannot_be_empty() -> None:
    problems = problems_of('[server]\nstorage_path = ""')

    assert problems == {"server.storage_path": "expected a path, got the string ''"}


def test_protocols_keep_their_order() -> None:
    config = parse_config('[security]\nprotocols = ["v3", "v1"]')

    assert config.security.protocols == ("v3", "v1")


def test_an_unknown_protocol_is_refused_listing_the_valid_ones() -> None:
    problems = problems_of('[security]\nprotocols = ["v1", "v4"]')

    assert problems == {
        "security.protocols[1]": (
            "expected one of 'v1', 'v2', 'token' or 'v3', got the string 'v4'"
        )
    }


def test_at_least_one_protocol_must_be_accepted() -> None:
    problems = problems_of("[security]\nprotocols = []")

    assert problems == {
        "security.protocols": "must list at least one of 'v1', 'v2', 'token' or 'v3'"
    }


def test_protocols_must_be_an_array_not_a_string() -> None:
    problems = problems_of('[security]\nprotocols = "v1"')

    assert problems == {"security.protocols": "expected an array, got the string 'v1'"}


def test_an_unknown_log_level_suggests_the_nearest_one() -> None:
    problems = problems_of('[logging]\nlevel = "warning"')

    assert problems["logging.level"].endswith("(did you mean 'warn'?)")


@pytest.mark.parametrize(
    "origins",
    [
        ["*"],
        ["https://chat.example.org"],
        ["http://localhost:8080", "https://[::1]:443", "*"],
    ],
)
def test_allowed_origins_accept_origins_and_the_wildcard(origins: list[str]) -> None:
    config = parse_config(
        f"[downloads]\nallowed_origins = {origins!r}".replace("'", '"')
    )

    assert config.downloads.allowed_origins == tuple(origins)


@pytest.mark.parametrize(
    "origin",
    ["https://chat.example.org/", "chat.example.org", "https://x.org/path", "https://"],
)
def test_an_allowed_origin_with_a_path_or_without_a_scheme_is_refused(
    origin: str,
) -> None:
    problems = problems_of(f'[downloads]\nallowed_origins = ["*", "{origin}"]')

    assert repr(origin) in problems["downloads.allowed_origins"]


@pytest.mark.parametrize("key", ["uploads.write_buffer_size", "downloads.chunk_size"])
@pytest.mark.parametrize(
    ("size", "accepted"),
    [(4 * KiB, True), (64 * MiB, True), (4 * KiB - 1, False), (64 * MiB + 1, False)],
)
def test_buffer_sizes_stay_between_4kib_and_64mib(
    key: str, size: int, accepted: bool
) -> None:
    section, name = key.split(".")
    text = f"[{section}]\n{name} = {size}"

    if accepted:
        parse_config(text)
    else:
        assert problems_of(text)[key].startswith("must be between 4KiB and 64MiB")


def test_an_idle_timeout_must_be_longer_than_nothing() -> None:
    problems = problems_of("[server]\nidle_timeout = 0")

    assert problems == {"server.idle_timeout": "must be longer than 0s, got 0s"}


@pytest.mark.parametrize("written", ["inf", "nan", "-1", '"-1s"', "true"])
def test_an_idle_timeout_must_be_a_finite_duration(written: str) -> None:
    problems = problems_of(f"[server]\nidle_timeout = {written}")

    assert list(problems) == ["server.idle_timeout"]


def test_a_shutdown_grace_of_nothing_stops_at_once() -> None:
    assert parse_config("[server]\nshutdown_grace = 0").server.shutdown_grace == 0.0


def test_a_maximum_upload_size_of_nothing_is_refused() -> None:
    problems = problems_of("[server]\nmax_upload_size = 0")

    assert list(problems) == ["server.max_upload_size"]


def test_an_unknown_key_names_the_nearest_valid_key() -> None:
    problems = problems_of('[server]\nlisten_adress = "127.0.0.1:80"')

    assert problems == {
        "server.listen_adress": "unknown key (did you mean 'listen_address'?)"
    }


def test_an_unknown_key_without_a_near_one_lists_the_valid_keys() -> None:
    problems = problems_of("[metrics]\ncolour = true")

    assert problems == {
        "metrics.colour": "unknown key (valid keys: enabled, listen_address)"
    }


def test_an_unknown_section_names_the_nearest_valid_section() -> None:
    problems = problems_of('[servr]\nlisten_address = "127.0.0.1:80"')

    assert problems == {"servr": "unknown section (did you mean 'server'?)"}


def test_each_unknown_key_is_its_own_problem() -> None:
    problems = problems_of("[server]\nmax-upload-size = 1\nidle_timout = 1")

    assert problems == {
        "server.idle_timout": "unknown key (did you mean 'idle_timeout'?)",
        "server.max-upload-size": "unknown key (did you mean 'max_upload_size'?)",
    }


def test_a_section_must_be_a_table() -> None:
    problems = problems_of("server = 1")

    assert problems == {"server": "expected a table, got the integer 1"}


def test_all_problems_are_reported_at_once() -> None:
    problems = problems_of(
        """
        [server]
        listen_address = "localhost:abc"
        max_upload_size = true
        idle_timout = 5

        [security]
        v2_type_from_extension = "false"
        protocols = ["v1", "v9"]

        [downloads]
        chunk_size = "1KiB"

        [logging]
        level = "loud"

        [perfomance]
        """
    )

    assert set(problems) == {
        "server.listen_address",
        "server.max_upload_size",
        "server.idle_timout",
        "security.v2_type_from_extension",
        "security.protocols[1]",
        "downloads.chunk_size",
        "logging.level",
        "perfomance",
    }


def test_setting_both_secret_and_secret_file_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[security]\nsecret = "a"\nsecret_file = "b"')

    assert (
        str(caught.value) == "<config>: security: set secret or secret_file, not both"
    )


def test_both_secrets_are_reported_along_with_other_problems_of_the_section() -> None:
    problems = problems_of(
        '[security]\nsecret = "a"\nsecret_file = "b"\nprotocols = []'
    )

    assert set(problems) == {"security", "security.protocols"}


def test_an_empty_secret_is_refused() -> None:
    problems = problems_of('[security]\nsecret = ""')

    assert list(problems) == ["security.secret"]


def test_a_toml_syntax_error_gives_its_line_and_column() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[server]\n\nbase_path = "/"x\n', source="hmacfs.toml")

    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (3, 16)
    assert problem.where == "line 3, column 16"
    assert str(caught.value).startswith("hmacfs.toml:3:16: ")


def test_every_problem_line_names_the_source_file(tmp_path: Path) -> None:
    path = tmp_path / "hmacfs.toml"
    path.write_text("[server]\nmax_upload_size = true\nidle_timeout = -1\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: server.") for line in lines)
    assert caught.value.source == str(path)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value) == (
        f"{path}: cannot read the file (No such file or directory)"
    )


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[logging]\nlevel = "d\xe9bug"\n'.encode("latin-1"))

    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_a_problem_renders_in_the_form_editors_recognise() -> None:
    assert ConfigProblem("server.base_path", "bad").render("f") == (
        "f: server.base_path: bad"
    )
    assert ConfigProblem.at_position(3, 7, "bad").render("f") == "f:3:7: bad"
    assert ConfigProblem("", "bad").render("f") == "f: bad"


def test_each_converter_is_a_new_one() -> None:
    assert make_converter() is not make_converter()


def test_the_secret_written_in_the_config_comes_first() -> None:
    config = parse_config('[security]\nsecret = "clé"')

    assert resolve_secret(config, {"HMACFS_SECRET": "env"}) == "clé".encode()


def test_a_secret_file_loses_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"from-file\n\n")
    config = parse_config('[security]\nsecret_file = "secret"', base_dir=tmp_path)

    assert resolve_secret(config, {"HMACFS_SECRET": "env"}) == b"from-file\n"


def test_a_secret_file_may_hold_any_bytes(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"\x00\xff\r")
    config = parse_config('[security]\nsecret_file = "secret"', base_dir=tmp_path)

    assert resolve_secret(config, {}) == b"\x00\xff\r"


def test_the_environment_gives_the_secret_when_the_file_names_none() -> None:
    assert resolve_secret(default_config(), {"HMACFS_SECRET": "env"}) == b"env"


def test_an_empty_environment_variable_is_no_secret() -> None:
    assert resolve_secret(default_config(), {"HMACFS_SECRET": ""}) is None


def test_without_any_secret_there_is_none() -> None:
    assert resolve_secret(default_config(), {}) is None


def test_an_unreadable_secret_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config = parse_config('[security]\nsecret_file = "absent"', base_dir=tmp_path)

    with pytest.raises(ConfigError) as caught:
        resolve_secret(config, {})

    assert caught.value.source == str(tmp_path / "absent")
    assert caught.value.problems[0].where == "security.secret_file"


@pytest.mark.parametrize("contents", [b"", b"\n"])
def test_an_empty_secret_file_is_a_config_error(
    tmp_path: Path, contents: bytes
) -> None:
    (tmp_path / "secret").write_bytes(contents)
    config = parse_config('[security]\nsecret_file = "secret"', base_dir=tmp_path)

    with pytest.raises(ConfigError, match="the secret is empty"):
        resolve_secret(config, {})


def test_a_key_written_in_the_wrong_section_names_its_section() -> None:
    problems = problems_of("[performance]\ndetailed_logging = true")

    assert problems == {
        "performance.detailed_logging": "unknown key (it belongs in [logging])"
    }
