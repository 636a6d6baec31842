"""The README's environment-profile table is derived from :data:`infra.config.PROFILES` and
the compute-plane choices made from it; this test keeps it in step."""

from __future__ import annotations

from infra.config import PROFILES
from infra.offline import ROOT

BEGIN, END = "<!-- profiles-table:begin -->", "<!-- profiles-table:end -->"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def profiles_table() -> str:
    """Markdown table: one column per profile, one row per setting the profile drives."""
    names = list(PROFILES)
    rows: list[tuple[str, list[str]]] = [
        ("availability zones (minimum)", [str(p.min_azs) for p in PROFILES.values()]),
        ("system nodes (minimum)", [str(p.system_min_size) for p in PROFILES.values()]),
        ("GPU nodes (minimum; max is `gpuMaxSize`)",
         [str(p.gpu_min_size) for p in PROFILES.values()]),
        ("RDS Multi-AZ", [_yes(p.multi_az_db) for p in PROFILES.values()]),
        ("RDS + EKS deletion protection, RDS final snapshot",
         [_yes(p.deletion_protection) for p in PROFILES.values()]),
        ("RDS backup retention (days)", [str(p.db_backup_days) for p in PROFILES.values()]),
        ("log retention floor (days)",
         [str(p.min_log_retention_days) for p in PROFILES.values()]),
        ("Pulumi `protect` + `retainOnDelete` on keys, buckets, database",
         [_yes(p.protect_data) for p in PROFILES.values()]),
        ("buckets and ECR repositories emptied on destroy",
         [_yes(p.force_destroy) for p in PROFILES.values()]),
        ("public EKS endpoint allow-list allowed",
         [_yes(n != "prod") for n in names]),
    ]
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


def test_readme_profile_table_matches_the_profiles() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme
    current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == profiles_table(), "regenerate: python -m tests.test_compute_docs"


def test_compute_doc_is_linked_from_the_readme() -> None:
    assert "docs/compute-plane.md" in (ROOT / "README.md").read_text()
    assert (ROOT / "docs" / "compute-plane.md").exists()


if __name__ == "__main__":
    print(profiles_table())
