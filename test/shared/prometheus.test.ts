import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { escapeLabelValue, formatLabels } from "../../shared/prometheus.ts";

describe("Prometheus label values", () => {
  it("escapes backslash, double quote and line feed, and nothing else", () => {
    assert.equal(escapeLabelValue("plain-value 1"), "plain-value 1");
    assert.equal(escapeLabelValue("C:\\dir"), "C:\\\\dir");
    assert.equal(escapeLabelValue('say "hi"'), 'say \\"hi\\"');
    assert.equal(escapeLabelValue("two\nlines"), "two\\nlines");
    assert.equal(escapeLabelValue('\\"\n'), '\\\\\\"\\n');
    assert.equal(escapeLabelValue("tab\there\rcr"), "tab\there\rcr");
  });

  it("keeps every sample on one line whatever the label holds", () => {
    const text = `m{${formatLabels({ network: "a\nb", reason: 'x"y\\' })}} 1`;
    assert.equal(text, 'm{network="a\\nb",reason="x\\"y\\\\"} 1');
    assert.equal(text.split("\n").length, 1);
    assert.equal(formatLabels({}), "");
  });
});
