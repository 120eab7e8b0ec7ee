"""Acceptance: the four OpenGate operation flows over real sockets.

Tether runs in-process on a loopback port; every device is ``tether agent opengate`` as a
separate process. Each flow is followed both through the native REST API and by a native
client WebSocket subscribed to the device's command updates.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.dialects.opengate.conftest import (
    agent_process,
    free_port,
    og_device,
    updates_until,
    wait_state,
    watching,
)
from tests.support import running


async def test_sync_reboot_and_async_simple_and_async_multistep_update(tmp_path: Path) -> None:
    async with running(tmp_path) as tether:
        port = free_port()
        key = await og_device(tether, "og-1", endpoint=f"http://127.0.0.1:{port}")
        # One device process: REBOOT_EQUIPMENT (and unknown names) answered in the HTTP
        # reply, everything else asynchronously.
        async with agent_process(
            "--device-id",
            "og-1",
            "--api-key",
            key,
            "--port",
            str(port),
            "--mode",
            "async",
            "--sync-ops",
            "REBOOT_EQUIPMENT,FACTORY_RESET",
            "--url",
            tether.url,
            "--step-delay",
            "0.05",
        ):
            # 1. synchronous REBOOT_EQUIPMENT: the result is the HTTP reply.
            async with watching(tether, "og-1") as client:
                made = await tether.call(
                    "POST",
                    "/api/v1/devices/og-1/commands",
                    json={"name": "REBOOT_EQUIPMENT", "parameters": {"type": "SOFTWARE"}},
                    expect=201,
                )
                uuid.UUID(made["ref"])  # the operation id is a UUID, set at creation
                seen = await updates_until(client, made["id"], "succeeded")
            states = [u["state"] for u in seen]
            assert states[0] == "sent", states
            assert states[-1] == "succeeded", states
            assert "delivered" in states
            done = seen[-1]
            assert done["status"] == "SUCCESSFUL"
            assert done["result"]["resultCode"] == "SUCCESSFUL"
            assert [s["name"] for s in done["steps"]] == ["REBOOT_EQUIPMENT"]
            assert done["steps"][0]["description"] == "SOFTWARE reboot done"
            rest = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
            assert rest["state"] == "succeeded"
            assert rest["steps"] == done["steps"]

            # 2. asynchronous, simple response: 201 first, the result POSTed later.
            async with watching(tether, "og-1") as client:
                made = await tether.call(
                    "POST",
                    "/api/v1/devices/og-1/commands",
                    json={"name": "SET_CLOCK_EQUIPMENT"},
                    expect=201,
                )
                seen = await updates_until(client, made["id"], "succeeded")
            states = [u["state"] for u in seen]
            assert states[:2] == ["sent", "delivered"], states
            assert states[-1] == "succeeded"
            assert seen[-1]["steps"][0]["name"] == "SET_CLOCK_EQUIPMENT"

            # 3. asynchronous multi-step UPDATE: three partial responses, then the final.
            update = {
                "bundleName": "fw",
                "bundleVersion": "2.0.1",
                "deploymentElements": [
                    {
                        "name": "firmware",
                        "version": "2.0.1",
                        "type": "FIRMWARE",
                        "downloadUrl": "https://files.example/fw-2.0.1.bin",
                        "operation": "UPGRADE",
                        "option": "MANDATORY",
                        "order": 1,
                    }
                ],
            }
            async with watching(tether, "og-1") as client:
                made = await tether.call(
                    "POST",
                    "/api/v1/devices/og-1/commands",
                    json={"name": "UPDATE", "parameters": update},
                    expect=201,
                )
                seen = await updates_until(client, made["id"], "succeeded")
            states = [u["state"] for u in seen]
            assert states[:2] == ["sent", "delivered"], states
            progress = [u for u in seen if u["state"] == "in_progress"]
            # each partial response shows up live with the steps so far
            assert [[s["name"] for s in u["steps"]] for u in progress] == [
                ["DOWNLOADFILE"],
                ["DOWNLOADFILE", "BEGININSTALL"],
                ["DOWNLOADFILE", "BEGININSTALL", "ENDINSTALL"],
            ]
            final = seen[-1]
            assert [s["name"] for s in final["steps"]] == [
                "DOWNLOADFILE",
                "BEGININSTALL",
                "ENDINSTALL",
                "ENDUPDATE",
            ]
            assert all(s["state"] == "SUCCESSFUL" for s in final["steps"])
            assert final["result"]["resultDescription"] == "Operation finished with no errors."
            rest = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
            assert rest["steps"] == final["steps"]

            # An operation the device does not implement fails with its code.
            made = await tether.call(
                "POST",
                "/api/v1/devices/og-1/commands",
                json={"name": "FACTORY_RESET"},
                expect=201,
            )
            failed = await wait_state(tether, made["id"], {"failed"})
            assert failed["status"] == "NOT_SUPPORTED"
            assert failed["error"].startswith("NOT_SUPPORTED")


async def test_device_driven_pending_for_a_device_unreachable_at_creation(tmp_path: Path) -> None:
    async with running(
        tmp_path,
        opengate={"retry_initial": 0.2, "retry_max": 0.5},
    ) as tether:
        dead = free_port()  # nothing listens here: the device is asleep
        key = await og_device(tether, "og-sleepy", endpoint=f"http://127.0.0.1:{dead}")
        async with watching(tether, "og-sleepy") as client:
            made = await tether.call(
                "POST",
                "/api/v1/devices/og-sleepy/commands",
                json={
                    "name": "GET_DEVICE_PARAMETERS",
                    "parameters": {"variableList": ["device.cpu.usage", "device.unknown"]},
                    "lifetime": 120,
                },
                expect=201,
            )
            first = await updates_until(client, made["id"], "sent")
            assert first[-1]["state"] == "sent"  # handed to the dispatcher, not delivered
            # The device wakes up, asks for its pending operations and answers them.
            async with agent_process(
                "--device-id",
                "og-sleepy",
                "--api-key",
                key,
                "--url",
                tether.url,
                "--driven-by",
                "device",
                "--cycles",
                "1",
                ready=None,
            ) as process:
                seen = await updates_until(client, made["id"], "succeeded")
                assert await process.wait() == 0
        states = [u["state"] for u in seen]
        assert states[0] == "delivered", states
        assert states[-1] == "succeeded", states
        done = seen[-1]
        rows = done["result"]["response"]
        assert rows[0] == {
            "variableName": "device.cpu.usage",
            "variableValue": 12.5,
            "resultCode": "SUCCESS",
            "resultDescription": "SUCCESS",
        }
        assert rows[1]["resultCode"] == "NON_EXISTENT"
        assert done["steps"][0]["name"] == "GET_DEVICE_PARAMETERS"
