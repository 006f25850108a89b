"""Rule-based tagging: "when a contact enters segment S, add tag T (and remove it on exit)".

A rule's tags are ordinary tags: they come through :func:`tag_svc.tags.tagging.apply` like every
other change, so each real change has its ``contact-tagged`` event (``by="rule"``), tags synced
with WeCom are queued for mark_tag, a repeat changes nothing and an erased contact is never
tagged. The actor of a rule is its **segment_id** (what ``contact-tagged`` documents for rules):
(segment, tag) is unique per tenant, so a ``contact_tags`` row with ``tagged_by = 'rule'`` and
``actor_id = S`` is "set by S's rule for this tag", and a rule re-created for the same pair owns
what its predecessor set.

**Events.** The worker hands this module the batch's ``segment-changed`` events
(:func:`apply_segment_changes`). They are triggers, and the stored membership is the truth: for
each (contact, segment) an event names, a contact that *is* a member now gets the tags of the
segment's rules, and one that is *not* loses the tags those rules set (``remove_on_exit``). The
processor writes a membership and enqueues its event in one transaction, and a contact's events
are consumed in order, so a stale event (an "entered" whose "exited" is still on its way) changes
nothing that its successor would undo: no flapping tags, no pushes to WeCom and back.

**Whose tag is removed on exit.** Only a row this segment's rule set. A tag an operator, a guide
or WeCom set stays, whether it was set before the contact entered (the rule's add was then a
no-op and the row stayed theirs) or after. A tag also stays while another segment the contact is
still in has a rule for it: the row passes to that segment's rule (no event: nothing changed for
the contact), whose exit removes it later.

**Creating a rule** applies it at once to the segment's members (:func:`apply_to_members`), in
chunks: each chunk locks the segment row ``FOR SHARE``, which the processor's membership writers
need ``FOR NO KEY UPDATE`` (for the sizes) before they commit, so no contact enters or leaves
under a chunk and none is tagged after its exit was handled. Events meanwhile apply as usual (the rule exists from its first commit).
Progress lives in the rule row; a creation that failed half-way is resumed by posting it again.
**Deleting a rule** leaves its tags in place (they are still "by rule", and a rule re-created for
the same segment and tag owns them again) unless asked to remove them (:func:`delete_rule`).

**Cycles.** The processor consumes ``contact-tagged``, so a rule's tag feeds every segment whose
rule reads a tag of that name. A chain "S1 adds T1, S2 reads T1, S2 adds T2, S1 reads T2" (or S
adding a tag S reads) would enter and exit forever. :func:`find_cycle` (pure) finds such a chain;
rule creation and segment rule edits refuse what would close one (:func:`check_segment_rule`).
A tag read counts whatever it is under (``not`` flaps too), and cycles are refused whatever
``remove_on_exit`` says.
"""

from tag_svc.tags.rules.apply import (
    APPLY_CHUNK,
    RULE_SEGMENT_CHANGES,
    apply_chunk,
    apply_segment_changes,
    apply_to_members,
    check_segment_rule,
    check_tag_rename,
    create_rule,
    delete_rule,
    remove_rule_tags,
)
from tag_svc.tags.rules.model import (
    CycleStep,
    DuplicateRule,
    RuleCycle,
    RuleEdge,
    RulePlan,
    SegmentRule,
    UnknownSegment,
    UnknownTag,
    find_cycle,
    plan_changes,
    rule_actor,
    tag_reads,
)

__all__ = [
    "APPLY_CHUNK",
    "RULE_SEGMENT_CHANGES",
    "CycleStep",
    "DuplicateRule",
    "RuleCycle",
    "RuleEdge",
    "RulePlan",
    "SegmentRule",
    "UnknownSegment",
    "UnknownTag",
    "apply_chunk",
    "apply_segment_changes",
    "apply_to_members",
    "check_segment_rule",
    "check_tag_rename",
    "create_rule",
    "delete_rule",
    "find_cycle",
    "plan_changes",
    "remove_rule_tags",
    "rule_actor",
    "tag_reads",
]
