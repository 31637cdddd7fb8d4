"""Analysis of trained agents: measures computed from rollouts and policies.

:mod:`fastmarl.analysis.comm`: emergent-communication measures (message entropy,
speaker consistency, instantaneous coordination, causal influence, ablations,
attention entropy) with bias-corrected information estimators.
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
