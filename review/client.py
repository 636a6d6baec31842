"""The bootstrap's Label Studio connection, plus binary downloads (images for the report)."""

from __future__ import annotations

from typing import Any

from bootstrap.client import Server


class LabelStudio(Server):
    def get_bytes(self, path: str, **params: Any) -> bytes:
        """GET a file through Label Studio with the API key (redirects followed; httpx drops
        the key on a redirect to another origin, e.g. a presigned S3 URL)."""
        def fetch() -> bytes:
            r = self._http.get(f"{self.url}{path}", params=params, follow_redirects=True,
                               headers=self.sdk._client_wrapper.get_headers())
            r.raise_for_status()
            return r.content

        return self.call(f"download {path}", fetch)
