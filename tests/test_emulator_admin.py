"""The emulator's admin API (/_emulator/): each endpoint reaches its handler, whatever is not an
endpoint is a 404 naming it, and a body that is not JSON is a 400."""

from tests.support.emulator import Arm


async def test_faults_and_the_request_log_round_trip_and_reset_clears_everything(arm: Arm) -> None:
    fault = {"method": "GET", "status": 500, "code": "InternalServerError", "count": 1}
    [added] = await arm.admin("POST", "faults", fault)
    assert await arm.admin("GET", "faults/") == [added]  # a trailing slash is the same endpoint
    assert await arm.admin("DELETE", "faults") == []
    assert await arm.admin("GET", "faults") == []
    [gateway] = await arm.admin("GET", "gateways")
    await arm.call("GET", gateway["id"])
    assert [r["path"] for r in await arm.requests()] == [gateway["id"]]
    assert await arm.admin("DELETE", "requests") == []
    assert await arm.requests() == []
    await arm.admin("POST", "faults", fault)
    assert await arm.admin("POST", "reset") == {}
    assert await arm.admin("GET", "gateways") == []
    assert await arm.admin("GET", "faults") == []


async def test_what_is_not_an_endpoint_is_a_404_naming_it(arm: Arm) -> None:
    for method, path in [("GET", "nothing"), ("PUT", "gateways"), ("GET", "reset")]:
        status, body, _ = await arm.call(method, f"/_emulator/{path}", query="")
        assert (status, body["error"]) == (
            404,
            {"code": "NotFound", "message": f"no admin route {method} /_emulator/{path}"},
        )


async def test_a_body_that_is_not_json_is_a_400(arm: Arm) -> None:
    url = f"{arm.running.url}/_emulator/faults"
    async with arm.session.post(url, data=b"{not json") as response:
        body = await response.json()
    assert response.status == 400 and body["error"]["code"] == "BadRequest"
