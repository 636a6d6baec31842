"""Pulumi.yaml and the README config table stay in step with the config model."""

from infra import config_docs


def test_pulumi_yaml_and_readme_match_the_model() -> None:
    assert config_docs.main(["--check"]) == 0


def test_every_key_is_in_the_readme() -> None:
    readme = config_docs.README.read_text()
    for key in config_docs.declared_config():
        assert f"`labelstack:{key}`" in readme, key
