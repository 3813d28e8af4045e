"""The render nodes as users see them (`rfarm nodes`: capacity for everyone, every job for admins)
and as admins steer them: drain, undrain, forget."""

from __future__ import annotations

from broker_contracts import messages as m
from broker_contracts.errors import ErrorCode, RfarmError
from gateway.context import Context, Outcome
from store import nodes


def node_list(ctx: Context, req: m.EmptyRequest) -> m.NodesReply:
    """Every node with its pool, slots and what is busy; the jobs on them are named only to their
    owners (all of them to an admin)."""
    caller = ctx.caller
    on = nodes.jobs_running(ctx.conn, None if caller.is_admin else caller.id)
    return m.NodesReply(
        nodes=[m.NodeInfo.model_validate({**r, "jobs": on.get(r["id"], [])}) for r in nodes.list_nodes(ctx.conn)]
    )


def _admin(ctx: Context, what: str) -> None:
    if not ctx.caller.is_admin:
        raise RfarmError(ErrorCode.AUTH_FORBIDDEN, f"only an admin may {what} a render node")


def _node(ctx: Context, name: str) -> m.NodeInfo:
    row = next((r for r in nodes.list_nodes(ctx.conn, include_gone_for=10 * 365 * 86400) if r["id"] == name), None)
    if row is None:
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"no render node named {name}: see `rfarm nodes`")
    return m.NodeInfo.model_validate(row)


def drain(ctx: Context, req: m.NodeRef) -> Outcome:
    """No new work for the node; its running work finishes. The node reads the drain key; the
    dispatcher stops counting it at once (and sets the key again should Redis lose it)."""
    _admin(ctx, "drain")
    if not nodes.set_drained(ctx.conn, req.name, True):
        _node(ctx, req.name)
    key = ctx.config.keys.drain(req.name)
    return Outcome(_node(ctx, req.name), after_commit=(lambda r: r.set(key, ctx.caller.username),))


def undrain(ctx: Context, req: m.NodeRef) -> Outcome:
    _admin(ctx, "undrain")
    if not nodes.set_drained(ctx.conn, req.name, False):
        _node(ctx, req.name)
    key = ctx.config.keys.drain(req.name)
    return Outcome(_node(ctx, req.name), after_commit=(lambda r: r.delete(key),))


def forget(ctx: Context, req: m.NodeRef) -> Outcome:
    """Remove a gone (or lost) node from the farm's list; an alive one is refused."""
    _admin(ctx, "forget")
    why = nodes.forget(ctx.conn, req.name)
    if why == "unknown":
        raise RfarmError(ErrorCode.REQUEST_INVALID, f"no render node named {req.name}: see `rfarm nodes`")
    if why == "alive":
        raise RfarmError(
            ErrorCode.JOB_INVALID_STATE, f"node {req.name} is alive: stop it first (or `rfarm drain {req.name}`)"
        )
    key = ctx.config.keys.drain(req.name)
    return Outcome(m.NodeRef(name=req.name), after_commit=(lambda r: r.delete(key),))
