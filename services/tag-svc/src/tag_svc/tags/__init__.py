"""Tags: the catalogue (groups and tags), tagging of contacts by hand, in bulk, from WeCom and by
rule, and pushing the changes made here back to WeCom.

- :mod:`tag_svc.tags.domain`: pure rules (diffs, events, push plans, job chunks, backoff);
- :mod:`tag_svc.tags.store`: every SQL statement of tags (a package, one module per table family);
- :mod:`tag_svc.tags.tagging`: one tag change applied in the caller's transaction (rows, events,
  pushes), used by the API, the job runner and the worker alike;
- :mod:`tag_svc.tags.inbound`: what the worker does with consumed events (erasure, follows,
  WeCom-side tag edits, segment changes for the tag rules);
- :mod:`tag_svc.tags.corp_tags`: syncing the catalogue with WeCom's corp tag library (pull, and
  pushing local-only tags);
- :mod:`tag_svc.tags.rules`: tag rules ("enter segment S -> tag T"): the cycle guard, applying
  segment-changed, tagging a new rule's existing members;
- :mod:`tag_svc.tags.edits`: catalogue edits and what follows them in their transaction (a
  rename's name sync, the WeCom pushes of renames and deletions of linked groups and tags);
- :mod:`tag_svc.tags.name_syncs`: a renamed tag's contacts re-evaluated for the segments reading
  the old or the new name, in chunks;
- :mod:`tag_svc.tags.jobs`: the bulk job runner, which also runs the name syncs (a worker
  background task);
- :mod:`tag_svc.tags.chunked`: what both runners share (claim a due row, apply one chunk per
  transaction, retry, give up);
- :mod:`tag_svc.tags.wecom`: the WeCom adapters (mark_tag, the corp tag library) and the
  access-token provider;
- :mod:`tag_svc.tags.pushes`: the background task that drains the push queue.
"""
