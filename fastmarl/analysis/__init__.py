"""Analysis of trained agents: measures computed from rollouts and policies.

:mod:`fastmarl.analysis.comm`: emergent-communication measures (message entropy,
speaker consistency, instantaneous coordination, causal influence, ablations,
attention entropy) with bias-corrected information estimators.
:mod:`fastmarl.analysis.elo`: Elo updates, the maximum-likelihood Elo fit and matrix scores;
:mod:`fastmarl.analysis.competitive`: a competitive run's snapshot matrix, ratings and exploitability.
"""

from fastmarl.analysis.comm import (
    attention_entropy,
    causal_influence,
    entropy,
    instantaneous_coordination,
    message_ablation,
    message_entropy,
    mutual_information,
    speaker_consistency,
)

__all__ = ["entropy", "mutual_information", "message_entropy", "speaker_consistency", "instantaneous_coordination",
           "causal_influence", "message_ablation", "attention_entropy"]
