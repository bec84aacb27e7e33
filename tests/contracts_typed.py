"""Checked statically by ``test_contracts.py`` (mypy): every algorithm class is an
``AgentClass`` and its instances are ``Agent``s. Not a test module itself."""

from pglab.algos.a2c import A2C
from pglab.algos.common import Agent, AgentClass
from pglab.algos.reinforce import Reinforce
from pglab.algos.sb3 import SB3Agent

ALGORITHM_CLASSES: list[AgentClass] = [Reinforce, A2C, SB3Agent]


def agents(reinforce: Reinforce, a2c: A2C, sb3: SB3Agent) -> list[Agent]:
    return [reinforce, a2c, sb3]
