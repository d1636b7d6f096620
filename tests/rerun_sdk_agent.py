"""An openai SDK agent for the two-process rerun tests: ``python rerun_sdk_agent.py BASE_URL``.

It asks the model, calls the ``weather`` tool, and asks again with the tool's answer. The unfixed
tool reports Fahrenheit as Celsius; ``--fixed`` converts (so the second request differs from the
recording). ``--instrument`` calls ``steptrace.instrument_openai()``; without it the rerun has to
notice that the recorded openai calls have nothing to be served through.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import openai

import steptrace

FIXED: list[bool] = []


@steptrace.tool
def weather(city: str) -> dict[str, Any]:
    fahrenheit = 70.0
    celsius = round((fahrenheit - 32) * 5 / 9, 1) if FIXED else fahrenheit
    return {"city": city, "celsius": celsius}


def run_agent(client: openai.OpenAI) -> str:
    with steptrace.agent_run(agent="weather-sdk", release="1.0"):
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = client.chat.completions.create(model="gpt-4o", messages=messages)
        messages.append({"role": "assistant", "content": first.choices[0].message.content})
        messages.append({"role": "user", "content": json.dumps(weather("Paris"))})
        second = client.chat.completions.create(model="gpt-4o", messages=messages)
        return str(second.choices[0].message.content)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("--instrument", action="store_true")
    parser.add_argument("--fixed", action="store_true")
    options = parser.parse_args()
    steptrace.configure("sdk-agent")
    if options.instrument:
        steptrace.instrument_openai()
    if options.fixed:
        FIXED.append(True)
    client = openai.OpenAI(api_key="sk-test-0000", base_url=options.base_url, max_retries=0)
    print("answer:", run_agent(client), flush=True)


if __name__ == "__main__":
    main()
