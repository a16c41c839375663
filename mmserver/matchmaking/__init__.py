"""Pure matching rules: queued tickets in, match proposals out (no web framework, no Redis)."""
from mmserver.matchmaking.matcher import match_queue, propose_matches
from mmserver.matchmaking.memo import FailureMemo
from mmserver.matchmaking.model import Matching, Proposal, QueuedTicket
from mmserver.matchmaking.rules import MatchRules, window

__all__ = ["FailureMemo", "Matching", "MatchRules", "Proposal", "QueuedTicket", "match_queue", "propose_matches",
           "window"]
