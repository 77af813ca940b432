"""A faithful offline emulator of Novita's GPU instance v1 API (see docs/emulator.md)."""

from novita_gpu.emulator.app import create_emulator_app
from novita_gpu.emulator.config import EmulatorConfig, Timings
from novita_gpu.emulator.faults import FaultConfig

__all__ = ["EmulatorConfig", "FaultConfig", "Timings", "create_emulator_app"]
