"""Node credentials and the signatures of reports and work items, without any server."""

from __future__ import annotations

import pytest

from broker_contracts.signing import (
    CredentialError,
    NodeCredential,
    Signer,
    event_is_signed_by,
    new_pair,
    work_is_signed_by,
)


def test_a_credential_reads_back_as_written() -> None:
    _, gateway = new_pair()
    made = NodeCredential.new("render-07", gateway)
    again = NodeCredential.parse(made.text() + "\n")
    assert again == made and again.public_key == Signer(made.seed).public_key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rfnode1:a:b",
        "rfnode2:n:AAAA:AAAA",
        "rfnode1:bad name:AAAA:AAAA",
        "rfnode1:n:!!:AAAA",
        "rfnode1:n:AAAA:AAAA",  # keys of the wrong length
    ],
)
def test_a_malformed_credential_is_refused_in_words(text: str) -> None:
    with pytest.raises(CredentialError):
        NodeCredential.parse(text)


def test_a_signature_is_good_for_one_kind_of_message_one_farm_and_one_key() -> None:
    seed, public = new_pair()
    key = Signer(seed)
    data = b"\x81\xa4kind\xa7started"
    event = key.sign_event("rf", data)
    assert event_is_signed_by(public, "rf", data, event)
    assert not event_is_signed_by(public, "rf", data + b"x", event)  # other bytes
    assert not event_is_signed_by(public, "other", data, event)  # another farm's prefix
    assert not work_is_signed_by(public, "rf", data, event)  # a report is not a work item
    assert not event_is_signed_by(new_pair()[1], "rf", data, event)  # another key
    assert not event_is_signed_by(public, "rf", data, None)
    assert not event_is_signed_by(public, "rf", data, event[:10])
    assert work_is_signed_by(public, "rf", data, key.sign_work("rf", data))
