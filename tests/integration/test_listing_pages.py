"""Paginated lists (tags, the catalog) are read to their last ``Link: rel="next"`` page, and no further than
``Limits.max_tag_pages`` pages (a registry that links page after page forever ends in an error)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from support.images import Image, Pusher
from support.registries import Registry

from airgap.config import Limits, RegistryOptions
from airgap.errors import RegistryError
from airgap.oci.registry import RegistryClient

TAGS = 1001  # airgap asks for 1,000 a page: two pages


def test_tags_are_read_across_pages_and_up_to_the_page_bound(registry: Registry,
                                                            make_image: Callable[..., Image]) -> None:
    make_image(registry, "pages/app", "t0000")
    data, media_type = Pusher(registry.url).get_manifest("pages/app", "t0000")

    def tag(first: int) -> None:
        pusher = Pusher(registry.url)  # one session per thread
        for i in range(first, TAGS, 4):
            pusher.manifest("pages/app", f"t{i:04d}", data, media_type)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(tag, range(1, 5)))
    assert sorted(RegistryClient().list_tags(registry.host, "pages/app")) == [f"t{i:04d}" for i in range(TAGS)]
    one_page = RegistryClient(RegistryOptions(limits=replace(Limits(), max_tag_pages=1)))
    with pytest.raises(RegistryError, match=rf"listing tags of {registry.host}/pages/app: more than 1 pages"):
        one_page.list_tags(registry.host, "pages/app")
    assert one_page.list_tags(registry.host, "pages/absent") == []
    assert "pages/app" in RegistryClient().list_repositories(registry.host)
