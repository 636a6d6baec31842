"""Which projects `labelstack review` picks on a server: spec keys, ids, and ambiguity."""

from __future__ import annotations

import pytest

from bootstrap.spec import MARKER_PREFIX
from review.run import ReviewInputError, find_projects


class Listing:
    """A server answering only the project listing (the selection reads nothing else)."""

    def __init__(self, projects: list[dict]) -> None:
        self.projects = projects

    def get_json(self, path: str, what: str, **params):
        assert path == "/api/projects/"
        return {"results": self.projects}


def project(pid: int, key: str | None) -> dict:
    desc = f"notes\n\n{MARKER_PREFIX}{key}" if key else "not managed"
    return {"id": pid, "title": f"p{pid}", "description": desc}


POLICIES = {"sam2-segmentation": ("brush", "sam"), "derm-lesion-tracking": ("derm", "derm")}


def test_spec_keys_and_ids_select_projects():
    srv = Listing([project(1, "sam2-segmentation"), project(2, "derm-lesion-tracking"),
                   project(3, None)])
    runs = find_projects(srv, [], POLICIES, "default")
    assert [(r.name, r.project_id, r.policy) for r in runs] == [
        ("sam2-segmentation", 1, "sam"), ("derm-lesion-tracking", 2, "derm")]
    runs = find_projects(srv, ["3", "derm-lesion-tracking"], POLICIES, "default")
    assert [(r.name, r.project_id, r.policy) for r in runs] == [("p3", 3, "default"),
                                                               ("derm-lesion-tracking", 2, "derm")]


def test_a_key_carried_by_two_projects_is_an_error_naming_their_ids():
    srv = Listing([project(4, "sam2-segmentation"), project(9, "sam2-segmentation")])
    with pytest.raises(ReviewInputError, match=r"2 projects carry this managed key \(ids 4, 9\)"):
        find_projects(srv, ["sam2-segmentation"], POLICIES, "default")
    runs = find_projects(srv, ["9"], POLICIES, "default")  # the id settles it
    assert [(r.name, r.project_id) for r in runs] == [("sam2-segmentation", 9)]


def test_unknown_project_names_the_choices():
    srv = Listing([project(1, "sam2-segmentation")])
    with pytest.raises(ReviewInputError, match=r"--project 'nope': no such project"):
        find_projects(srv, ["nope"], POLICIES, "default")
