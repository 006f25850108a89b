"""The pure half of the corp tag sync: parsing WeCom's answer, WeCom's order, the matching rules
(plan_pull) and the in-memory library behind the stand-in adapter."""

from __future__ import annotations

import uuid

import pytest

from tag_svc.tags.corp_tags import (
    CorpTag,
    CorpTagGroup,
    CorpTagLibrary,
    GroupStep,
    Issue,
    LocalGroup,
    LocalTag,
    NewCorpTag,
    TagStep,
    display_order,
    parse_corp_tag_list,
    plan_pull,
)
from tag_svc.tags.corp_tags.library import UnknownCorpTag


def wgroup(gid: str, name: str, tags: list[CorpTag], order: int = 0, created: int = 0) -> CorpTagGroup:
    return CorpTagGroup(gid, name, order, created, tuple(tags))


def wtag(tid: str, name: str, order: int = 0, created: int = 0) -> CorpTag:
    return CorpTag(tid, name, order, created)


def test_parse_drops_deleted_entries_and_strips_names():
    payload = {
        "errcode": 0,
        "tag_group": [
            {
                "group_id": "etG1",
                "group_name": " 来源 ",
                "create_time": 1557838797,
                "order": 1,
                "deleted": False,
                "tag": [
                    {"id": "etT1", "name": "门店", "create_time": 1557838797, "order": 1, "deleted": False},
                    {"id": "etT2", "name": "旧", "create_time": 1557838797, "order": 2, "deleted": True},
                ],
            },
            {
                "group_id": "etG2",
                "group_name": "删",
                "create_time": 1,
                "order": 0,
                "deleted": True,
                "tag": [],
            },
        ],
    }
    assert parse_corp_tag_list(payload) == [
        CorpTagGroup("etG1", "来源", 1, 1557838797, (CorpTag("etT1", "门店", 1, 1557838797),))
    ]
    assert parse_corp_tag_list({"errcode": 0}) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"tag_group": {}},
        {"tag_group": [{"group_name": "x", "tag": []}]},
        {"tag_group": [{"group_id": "etG", "group_name": "x", "order": "1"}]},
        {"tag_group": [{"group_id": "etG", "group_name": "x", "tag": [{"id": "etT"}]}]},
    ],
)
def test_parse_refuses_a_malformed_answer(payload):
    with pytest.raises(ValueError):
        parse_corp_tag_list(payload)


def test_wecom_order_is_larger_first_then_older_first():
    tags = [wtag("c", "c", order=1, created=5), wtag("a", "a", order=1, created=3), wtag("b", "b", order=9)]
    assert [t.id for t in display_order(tags)] == ["b", "a", "c"]


def test_an_empty_catalogue_gets_every_group_and_tag_in_wecom_order():
    wecom = [
        wgroup("etG1", "来源", [wtag("etT1", "门店"), wtag("etT2", "朋友", order=5)], order=1),
        wgroup("etG2", "消费", [wtag("etT3", "高")], order=7),
    ]
    plan = plan_pull(wecom, [], [])
    assert plan.groups == (GroupStep("etG2", "消费", 1, None), GroupStep("etG1", "来源", 2, None))
    assert plan.tags == (
        TagStep("etT3", "etG2", "高", 1, None),
        TagStep("etT2", "etG1", "朋友", 1, None),
        TagStep("etT1", "etG1", "门店", 2, None),
    )
    assert plan.unlink_groups == plan.unlink_tags == plan.issues == ()


def test_matching_by_id_then_by_name_and_unlinking_what_wecom_lost():
    g_source, g_old, g_free = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t_linked, t_by_name, t_stale, t_local, t_elsewhere = (uuid.uuid4() for _ in range(5))
    groups = [
        LocalGroup(g_source, "来源", 1, "etG1"),
        LocalGroup(g_old, "旧组", 2, "etGONE"),
        LocalGroup(g_free, "消费", 3, None),
    ]
    tags = [
        LocalTag(t_linked, g_source, "门店海报", 1, "etT1"),  # renamed in WeCom
        LocalTag(t_by_name, g_free, "高", 7, None),  # same name in the matched group: linked
        LocalTag(t_stale, g_old, "旧", 1, "etTGONE"),  # WeCom lost it: unlinked
        LocalTag(t_local, g_source, "本地", 2, None),  # local-only: left alone
        LocalTag(t_elsewhere, g_old, "低", 2, "etT4"),  # linked, in another local group: moved
    ]
    wecom = [
        wgroup("etG1", "来源", [wtag("etT1", "门店")], order=2),
        wgroup("etG2", "消费", [wtag("etT3", "高", order=1), wtag("etT4", "低")], order=1),
    ]
    plan = plan_pull(wecom, groups, tags)
    assert plan.groups == (
        GroupStep("etG1", "来源", 1, g_source),
        GroupStep("etG2", "消费", 2, g_free, link=True, reorder=True),
    )
    assert not plan.groups[0].changes
    assert plan.tags == (
        TagStep("etT1", "etG1", "门店", 1, t_linked, rename=True),
        TagStep("etT3", "etG2", "高", 1, t_by_name, link=True, reorder=True),
        TagStep("etT4", "etG2", "低", 2, t_elsewhere, move=True),
    )
    assert plan.unlink_groups == (groups[1],)
    assert plan.unlink_tags == (tags[2],)


def test_a_group_linked_to_a_lost_wecom_id_is_relinked_by_name_not_unlinked():
    g = uuid.uuid4()
    plan = plan_pull([wgroup("etNEW", "来源", [])], [LocalGroup(g, "来源", 1, "etGONE")], [])
    assert plan.groups == (GroupStep("etNEW", "来源", 1, g, link=True),)
    assert plan.unlink_groups == ()


def test_a_name_held_by_a_tag_linked_to_another_live_wecom_tag_is_not_taken_over():
    g, t = uuid.uuid4(), uuid.uuid4()
    # WeCom swapped names: etA is now "B" while the local "B" still mirrors live etB.
    wecom = [wgroup("etG", "组", [wtag("etA", "B", created=1), wtag("etB", "A", created=2)])]
    tags = [LocalTag(t, g, "B", 2, "etB")]
    plan = plan_pull(wecom, [LocalGroup(g, "组", 1, "etG")], tags)
    assert plan.tags == (
        TagStep("etA", "etG", "B", 1, None),
        TagStep("etB", "etG", "A", 2, t, rename=True),
    )


def test_a_synced_catalogue_plans_no_change():
    g1, g2, t1, t2 = (uuid.uuid4() for _ in range(4))
    wecom = [
        wgroup("etG1", "a", [wtag("etT1", "x", order=3), wtag("etT2", "y")], order=5),
        wgroup("etG2", "b", []),
    ]
    groups = [LocalGroup(g1, "a", 1, "etG1"), LocalGroup(g2, "b", 2, "etG2")]
    tags = [LocalTag(t1, g1, "x", 1, "etT1"), LocalTag(t2, g1, "y", 2, "etT2")]
    plan = plan_pull(wecom, groups, tags)
    assert not any(s.changes for s in (*plan.groups, *plan.tags))
    assert plan.unlink_groups == plan.unlink_tags == plan.issues == ()


def test_names_the_catalogue_cannot_hold_are_issues():
    long = "长" * 65
    plan = plan_pull(
        [wgroup("etG", "ok", [wtag("etT", long)]), wgroup("etH", "", [wtag("etU", "x")])], [], []
    )
    assert plan.groups == (GroupStep("etG", "ok", 1, None),)
    assert plan.tags == ()
    assert plan.issues == (
        Issue("invalid-name", long, wecom_group_id="etG", wecom_tag_id="etT"),
        Issue("invalid-name", "", wecom_group_id="etH"),
    )


def test_library_adds_tags_as_wecom_does():
    lib = CorpTagLibrary()
    group = lib.add_group("来源", ["门店", ("朋友", 3)], order=2)
    assert [t.name for t in group.tags] == ["门店", "朋友"]
    # By name: into the existing group; a name the group has is not created again.
    more = lib.add_corp_tag(group_name="来源", tags=[NewCorpTag("门店"), NewCorpTag("海报")])
    assert more.group_id == group.group_id and [t.name for t in more.tags] == ["海报"]
    assert [t.name for t in lib.groups()[0].tags] == ["门店", "朋友", "海报"]
    with pytest.raises(ValueError):
        lib.add_corp_tag(group_name="空", tags=[])
    with pytest.raises(UnknownCorpTag):
        lib.add_corp_tag(group_id="etNOPE", tags=[NewCorpTag("x")])
    # Deleting a group's last tag deletes the group.
    lone = lib.add_group("单", ["一"])
    lib.delete_tag(lone.tags[0].id)
    assert [g.name for g in lib.groups()] == ["来源"]
    lib.rename_tag(group.tags[0].id, "门店二")
    assert lib.groups()[0].tags[0].name == "门店二"
