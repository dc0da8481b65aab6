"""The real operator entry point with one test controller, so that a run lists and watches.

`python configmap_operator.py [flags]` behaves exactly like `moorage-operator` (settings, logging,
client, manager, leader election), except that it registers a controller over ConfigMaps that
owns ServiceAccounts and logs `test_reconciled` for every ConfigMap it reconciles.
"""

from __future__ import annotations

import sys

import structlog

from moorage_core.kube import CONFIGMAPS, SERVICEACCOUNTS
from moorage_core.loggers import configure_logging
from moorage_core.running import run_service
from moorage_operator.__main__ import DRAIN_TIMEOUT, run_operator
from moorage_operator.runtime import Controller, Manager, Request, Result
from moorage_operator.settings import OperatorSettings

log = structlog.get_logger("configmap_operator")


class LoggingReconciler:
    async def reconcile(self, request: Request) -> Result:
        log.info("test_reconciled", request=str(request))
        return Result()


def register(manager: Manager, settings: OperatorSettings) -> list[Controller]:
    controller = manager.add_controller("configmap", LoggingReconciler(), for_kind=CONFIGMAPS)
    controller.owns(manager.owned_informer(SERVICEACCOUNTS))
    return [controller]


def main() -> int:
    settings = OperatorSettings.from_env_and_args(sys.argv[1:])
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return run_service(
        lambda lifecycle: run_operator(settings, register=register, lifecycle=lifecycle),
        drain_timeout=DRAIN_TIMEOUT,
    )


if __name__ == "__main__":
    sys.exit(main())
