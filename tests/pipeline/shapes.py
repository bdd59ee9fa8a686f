"""Realistic Clara pipelines, written for these tests in the shapes real ones have (none is
a copy): rooted container paths, operators without a command, requests, services,
templates, unnamed inputs, old api-versions. Each is paired with its local stand-ins.
"""

from __future__ import annotations

# A DICOM-style chain: reader -> segmentation -> writer, each with /input, /output and
# /logs; no operator has a command (Clara runs the image's entry-point).
DICOM_CHAIN = """\
api-version: 0.4.0
name: ct-organ-seg
pull-secrets:
- registry-secret
operators:
- name: dicom-reader
  description: converts the DICOM series of the payload to a volume
  container:
    image: example.org/dicom-reader
    tag: "2.1"
    variables:
      LEVEL: debug
  requests: {cpu: 1, memory: 2048}
  input:
  - path: /input
  output:
  - path: /output
  - name: logs
    path: /logs
- name: segmentation
  container:
    image: example.org/organ-seg
    tag: "2.1"
  requests: {gpu: 1, memory: 8192}
  input:
  - from: dicom-reader
    path: /input
  output:
  - path: /output
  - name: logs
    path: /logs
- name: dicom-writer
  container:
    image: example.org/dicom-writer
    tag: "2.1"
  input:
  - from: segmentation
    path: /input/mask
  - from: dicom-reader
    path: /input/original
  output:
  - path: /output
  - name: publish
    path: /publish
  - name: logs
    path: /logs
"""

ORGANS = ("liver", "spleen", "kidney-left", "kidney-right", "pancreas", "lungs")


def fan_out_fan_in() -> str:
    """One operator with six outputs, six models, a merger with six (unnamed) inputs."""
    text = "api-version: 0.4.0\nname: multi-organ\noperators:\n"
    text += "- name: prepare\n  container: {image: example.org/prepare, tag: '1'}\n"
    text += "  input: [{path: /input}]\n  output:\n"
    text += "".join(f"  - {{name: {o}, path: /output/{o}}}\n" for o in ORGANS)
    for organ in ORGANS:
        text += (
            f"- name: model-{organ}\n"
            f"  container: {{image: example.org/seg-{organ}, tag: '1'}}\n"
            "  requests: {gpu: 1}\n"
            f"  input: [{{from: prepare, name: {organ}, path: /input}}]\n"
            "  output: [{path: /output}]\n"
        )
    text += "- name: merger\n  container: {image: example.org/merger, tag: '1'}\n  input:\n"
    text += "".join(f"  - {{from: model-{o}, path: /input/{o}}}\n" for o in ORGANS)
    text += "  output: [{path: /output}]\n"
    return text


# An inference operator that needs an inference server, declared as a service.
WITH_SERVICES = """\
api-version: 0.4.0
name: ai-with-service
orchestrator: Clara
operators:
- name: inference
  variables:
    MODEL: chest-xray
  container:
    image: example.org/xray-classifier
    tag: "0.8"
  input:
  - path: /input
  output:
  - path: /output
  services:
  - name: inference-server
    container:
      image: example.org/inference-server
      tag: "21.02"
      command: [serve, --model-store=/models]
    connections:
      http:
      - name: NVIDIA_CLARA_TRTISURI
        port: 8000
      - name: NVIDIA_CLARA_METRICS
        port: 8002
"""

# A template: the organ and model tag are parameters with defaults.
TEMPLATED = """\
api-version: 0.4.0
name: organ-${{ organ }}
parameters:
  organ: liver
  model-tag: "3.0"
  threshold:
operators:
- name: load
  container: {image: example.org/loader, tag: "${{ model-tag }}"}
  input: [{path: /input}]
  output: [{path: /output}]
- name: segment-${{ organ }}
  container:
    image: example.org/seg-${{ organ }}
    tag: "${{ model-tag }}"
    variables:
      ORGAN: ${{ organ }}
      THRESHOLD: "${{ threshold }}"
  input: [{from: load, path: /input}]
  output: [{path: /output}]   # ${{ not-a-parameter }} in a comment is left alone
"""

# Genomics-style: an assembler reading three upstream outputs, none of them by name.
GENOMICS = """\
api-version: 0.4.0
name: de-novo-assembly
operators:
- name: trim-reads
  container: {image: example.org/trimmer, tag: "1"}
  input: [{path: /input}]
  output: [{path: /output}]
- name: correct-reads
  container: {image: example.org/corrector, tag: "1"}
  input: [{from: trim-reads, path: /input}]
  output: [{path: /output}]
- name: count-kmers
  container: {image: example.org/kmers, tag: "1"}
  input: [{from: trim-reads, path: /input}]
  output: [{path: /output}]
- name: assemble
  container: {image: example.org/assembler, tag: "1"}
  requests: {cpu: 8, memory: 65536}
  input:
  - from: trim-reads
    path: /input/reads
  - from: correct-reads
    path: /input/corrected
  - from: count-kmers
    path: /input/kmers
  output: [{path: /output}]
"""

# api-version 0.3.0, as the 0.7.1 documentation's own examples: commands that copy
# from the declared input path to the declared output path.
OLD_030 = """\
api-version: 0.3.0
name: copy-twice
operators:
- name: first
  container:
    image: example.org/centos
    tag: centos7
    command: [sh, -c, 'cp -r "$0"/. "$1"', /in, /out]
  input:
  - path: /in
  output:
  - path: /out
- name: second
  container:
    image: example.org/ubuntu
    tag: "18.04"
    command: [sh, -c, 'cp -r "$0"/. "$1" && echo copied >> "$1"/log.txt', /in, /out]
  input:
  - from: first
    path: /in
  output:
  - path: /out
"""
