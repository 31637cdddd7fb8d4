"""Network building blocks; shapes are (..., A, features) with A the agent axis."""

from fastmarl.nn.comm import CommNet, DiscreteChannel, TarMAC, make_comm
from fastmarl.nn.layers import AgentGRU, AgentLinear, AgentMLP, agent_id_onehot
from fastmarl.nn.mixers import QMixer, VDNMixer
from fastmarl.nn.normalize import RunningMeanStd

__all__ = ["AgentLinear", "AgentMLP", "AgentGRU", "agent_id_onehot", "RunningMeanStd", "CommNet", "TarMAC",
           "DiscreteChannel", "make_comm", "VDNMixer", "QMixer"]
