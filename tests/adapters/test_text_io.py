"""Text readers on real file formats: SMS Spam Collection TSV, CSV with quotes, header-less CSV,
plain text, datasets; and the errors that name the file and the line."""
from __future__ import annotations

import pytest

from multissl.adapters.text_io import read_texts
from multissl.errors import DataError

SMS = ('ham\tGo until jurong point, crazy.. Available only in bugis n great world la e buffet...\n'
       'spam\tFree entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 "now"\n'
       'ham\tOk lar... Joking wif u oni...\n')


def test_sms_spam_collection_layout_without_header(tmp_path):
    p = tmp_path / "SMSSpamCollection"
    p.write_bytes(SMS.encode())
    r = read_texts(p, label_column="label")
    assert r.labels == ["ham", "spam", "ham"]
    assert r.texts[1].endswith('87121 "now"')  # a bare quote is text, not CSV quoting
    assert r.where[2] == f"{p} line 3"
    assert read_texts(p).texts == r.texts  # default column "text"


def test_csv_with_header_quotes_and_multiline_field(tmp_path):
    p = tmp_path / "msgs.csv"
    p.write_text('id,message,label\n1,"Hello, ""friend""",ham\n2,"two\nlines",spam\n3,plain,ham\n')
    r = read_texts(p, column="message", label_column="label")
    assert r.texts == ['Hello, "friend"', "two\nlines", "plain"]
    assert r.labels == ["ham", "spam", "ham"]
    assert r.where == [f"{p} line 2", f"{p} line 3", f"{p} line 5"]


def test_headerless_csv_with_column_names_and_joined_columns(tmp_path):
    p = tmp_path / "news.csv"
    p.write_text('"3","Fears for pension","Unions say they are disappointed."\n"4","Space race","A second team."\n')
    r = read_texts(p, column=["title", "description"], label_column="label",
                   column_names=["label", "title", "description"])
    assert r.texts == ["Fears for pension Unions say they are disappointed.", "Space race A second team."]
    assert r.labels == ["3", "4"]
    assert read_texts(p, column="title,description", column_names=["label", "title", "description"]).texts == r.texts


def test_tsv_with_header_and_plain_text_file(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\nfirst one\ta\nsecond\tb\n")
    assert read_texts(p).texts == ["first one", "second"]
    q = tmp_path / "lines.txt"
    q.write_text("one text\nanother text\n")
    assert read_texts(q).texts == ["one text", "another text"]


def test_list_and_datasets():
    import datasets

    assert read_texts(["a b", "c"]).texts == ["a b", "c"]
    ds = datasets.Dataset.from_dict({"sms": ["hi there", "win cash"], "y": [0, 1]})
    assert read_texts(ds).texts == ["hi there", "win cash"]  # the only string column
    ds2 = datasets.Dataset.from_dict({"text": ["x y"], "other": ["z"]})
    assert read_texts(ds2).texts == ["x y"]
    with pytest.raises(DataError, match="2 string columns"):
        read_texts(datasets.Dataset.from_dict({"a": ["x"], "b": ["y"]}))
    with pytest.raises(DataError, match="no column 'body'"):
        read_texts(ds, column="body")


@pytest.mark.parametrize("texts,where", [(["ok", ""], "record 1"), (["ok", "   \t"], "record 1"),
                                         (["ok", None], "record 1"), ([3, "ok"], "record 0")])
def test_bad_records_in_a_list(texts, where):
    with pytest.raises(DataError, match=where):
        read_texts(texts)


def test_empty_list():
    with pytest.raises(DataError, match="empty"):
        read_texts([])


def test_empty_text_in_a_file_names_the_line(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("text,label\nfine,a\n  ,b\n")
    with pytest.raises(DataError, match=r"m\.csv line 3: empty text"):
        read_texts(p)


def test_non_utf8_bytes_name_the_line(tmp_path):
    p = tmp_path / "SMSSpamCollection"
    p.write_bytes(b"ham\tfine\nspam\tcaf\xe9 prize\n")
    with pytest.raises(DataError, match=r"line 2: not valid UTF-8"):
        read_texts(p)


def test_missing_label_column_and_missing_label(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("text,category\nhello,a\n")
    with pytest.raises(DataError, match=r"m\.csv: no column 'label'"):
        read_texts(p, label_column="label")
    q = tmp_path / "n.csv"
    q.write_text("text,label\nhello,a\nbye,\n")
    with pytest.raises(DataError, match=r"n\.csv line 3: missing label"):
        read_texts(q, label_column="label")


def test_wrong_field_count_and_missing_file(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("text,label\nhello,a\nbye,b,extra\n")
    with pytest.raises(DataError, match=r"m\.csv line 3: 3 fields, expected 2"):
        read_texts(p)
    with pytest.raises(DataError, match="no such file"):
        read_texts(tmp_path / "nope.csv")
