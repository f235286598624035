"""The official openai Python SDK against a likeness gateway, unchanged but
for base_url and the API key. Prints one JSON line a call; the Rust test
checks what it says.

usage: openai_sdk.py BASE_URL API_KEY OUT_DIR PHOTO PHOTO2 REFUSED_PHOTO
"""

import base64
import json
import pathlib
import sys

import openai


def main():
    base, key, out, photo, photo2, refused = sys.argv[1:7]
    out = pathlib.Path(out)
    client = openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key=key, max_retries=0)
    personal = {"X-Likeness-User": "sdk-user"}

    def save(name, result):
        paths = []
        for i, d in enumerate(result.data):
            p = out / f"{name}-{i}.{result.output_format or 'png'}"
            p.write_bytes(base64.b64decode(d.b64_json))
            paths.append(str(p))
        print(json.dumps({"call": name, "created": result.created, "files": paths,
                          "output_format": result.output_format, "size": result.size}))

    save("generate", client.images.generate(model="builtin", prompt="a lake at dawn", size="256x256", n=2,
                                            extra_headers=personal))
    with open(photo, "rb") as f:
        save("edit-one", client.images.edit(image=f, prompt="as a watercolour", size="256x256",
                                            model="builtin", extra_headers=personal))
    with open(photo, "rb") as f, open(photo2, "rb") as g:
        save("edit-list", client.images.edit(image=[f, g], prompt="as a poster", size="256x256",
                                             model="builtin", extra_headers=personal))
    try:
        with open(refused, "rb") as f:
            client.images.edit(image=f, prompt="as a sketch", size="256x256", extra_headers=personal)
        print(json.dumps({"call": "refused", "raised": None}))
    except openai.APIStatusError as e:
        print(json.dumps({"call": "refused", "raised": type(e).__name__, "status": e.status_code,
                          "code": e.code, "type": e.type}))
    try:
        client.images.generate(model="builtin", prompt="x", size="256x256", response_format="url",
                               extra_headers=personal)
    except openai.APIStatusError as e:
        print(json.dumps({"call": "url", "raised": type(e).__name__, "status": e.status_code, "code": e.code,
                          "param": e.param}))
    try:
        openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key="wrong", max_retries=0).images.generate(
            model="builtin", prompt="x", extra_headers=personal)
    except openai.APIStatusError as e:
        print(json.dumps({"call": "wrong-key", "raised": type(e).__name__, "code": e.code}))


if __name__ == "__main__":
    main()
