"""Bulk secret files for ``relay gateway secret import``: ``outer_gateway.secret_files``."""

from __future__ import annotations

import pytest

from outer_gateway.secret_files import parse_secret_file
from relay.codes import BAD_FILE, BAD_PATH
from relay.errors import UsageError


def test_a_json_object_of_paths() -> None:
    text = '  {"db/a/password": "p\\u00e9", "db/b/key": ""}'
    assert parse_secret_file(text) == {"db/a/password": "pé".encode(), "db/b/key": b""}


def test_an_env_file_with_quotes_escapes_comments_and_export() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            "export db/a/user = plain value  # trailing comment",
            'db/a/dq="line\\none\\t\\"q\\" \\\\ \\x"',
            "db/a/sq='no \\n escapes # here'",
            "db/a/hash=a#b",
        ]
    )
    assert parse_secret_file(text) == {
        "db/a/user": b"plain value",
        "db/a/dq": b'line\none\t"q" \\ \\x',
        "db/a/sq": b"no \\n escapes # here",
        "db/a/hash": b"a#b",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not valid JSON (line 1)"),
        ('{"db/a": 1}', "one object of path: string value"),
        ("db/a/b=1\nno equals sign here", "line 2 is not KEY=VALUE"),
        ('db/a/b="open quote', "line 1: unterminated quote"),
        ("db/a/b='open", "line 1: unterminated quote"),
    ],
)
def test_a_file_that_does_not_parse_is_bad_file(text: str, says: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_secret_file(text)
    assert refused.value.code == BAD_FILE
    assert says in refused.value.message


@pytest.mark.parametrize("text", ['{"../etc/passwd": "x"}', "db//a=1", '{"/abs": "x"}'])
def test_an_invalid_path_is_bad_path_and_the_value_is_not_echoed(text: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_secret_file(text)
    assert refused.value.code == BAD_PATH
    assert 'x"' not in refused.value.message
