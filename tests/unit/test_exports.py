import durable

# Aliases of typing constructs report typing's module, not the one that defines them.
TYPE_ALIASES = {"RunStatus"}


def test_all_lists_exactly_the_public_names():
    public = sorted(
        {
            name
            for name, value in vars(durable).items()
            if not name.startswith("_") and getattr(value, "__module__", "").startswith("durable.")
            and not isinstance(value, type(durable))
        }
        | TYPE_ALIASES
    )
    assert durable.__all__ == sorted(durable.__all__)
    assert sorted(durable.__all__) == public
