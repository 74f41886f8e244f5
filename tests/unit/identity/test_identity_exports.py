"""The public API of gateway.identity is exactly what __all__ says."""

import gateway.identity as identity


def test_exported_names() -> None:
    assert sorted(identity.__all__) == sorted(
        [
            "MAX_ACT_DEPTH",
            "MAX_UPSTREAM_TTL_S",
            "JwksCache",
            "TokenVerifier",
            "UpstreamTokenMinter",
            "VerificationCache",
            "VerificationKey",
            "generate_dev_issuer",
            "jwk_thumbprint",
            "jwks_document",
            "load_or_create_signing_key",
            "load_private_key_file",
            "load_public_key_file",
            "mint_token",
            "nest_act_chain",
            "parse_act_chain",
            "parse_bearer",
            "parse_jwks",
            "public_jwk",
        ]
    )
    for name in identity.__all__:
        assert getattr(identity, name) is not None
