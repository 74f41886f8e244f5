"""A small transparency-log witness: `gateway witness serve` (C2SP tlog-witness).

An auditor who does not trust the gateway's operator cannot rely on the operator's
own copies of its checkpoints: the operator could show one history to one auditor and
another to the next (a split view, or a fork after a restore). A witness is someone
else who keeps, for every log it follows, the latest checkpoint it cosigned, and
cosigns a new one only when a consistency proof shows it extends that one. Auditors
then require cosignatures of witnesses they chose (`gateway audit verify --witness
KEY --min K`).

Modules:

- `keys`: the witness's Ed25519 private key (PKCS#8 PEM, made by `gateway witness
  keygen`) and its cosignature/v1 verifier key;
- `state`: the witness's view, one row per log origin (size, root), in SQLite, with
  the check and the update in one transaction; refused requests kept as evidence;
- `server`: the HTTP endpoint ``POST /add-checkpoint`` and its answers
  (200 cosignature, 400, 403, 404, 409 with ``text/x.tlog.size``, 422).

Invariants: never cosigns a checkpoint inconsistent with the one it cosigned last for
that origin, nor a smaller tree after a larger one, across restarts (the state is
written before the answer). Imports `gateway.tlog` and nothing of the gateway's
database or audit log: a witness is meant to run somewhere else, by someone else.
"""
