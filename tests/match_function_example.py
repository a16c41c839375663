"""An example match function: one-on-one by a `level` attribute (docs/MATCH_RULES.md).

    [modes.duel-by-level]
    team_size = 1
    teams = 2
    match_function = "tests.match_function_example:pair_by_level"

    [modes.duel-by-level.attributes]
    level = "number"
"""

MAX_GAP = 5.0     # levels apart at first...
GAP_PER_S = 0.5   # ...widening by this much per second the longer-waiting ticket has waited


def pair_by_level(tickets, mode, now):
    """Pair neighbours in level order when their levels are close enough; solo tickets only."""
    solo = sorted((t for t in tickets if t.size == 1 and "level" in t.attributes),
                  key=lambda t: t.attributes["level"])
    proposals = []
    i = 0
    while i + 1 < len(solo):
        a, b = solo[i], solo[i + 1]
        gap = MAX_GAP + GAP_PER_S * max(a.waited_s, b.waited_s)
        if b.attributes["level"] - a.attributes["level"] <= gap:
            proposals.append([[a.ticket_id], [b.ticket_id]])
            i += 2
        else:
            i += 1
    return proposals
