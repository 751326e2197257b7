// Decodes OPC UA JSON DataValues as a consumer using node-opcua-json does
// (opcuaJsonDecodeDataValue), for publish's tests. Input on stdin: a JSON
// array of {"name", "field"}; output on stdout: a JSON array of
// {"name", "type", "array", "dims", "status", "source", "value"} with
// the value in a canonical form the Go test compares (64-bit integers and
// non-finite numbers as strings, ByteStrings as "b64:…", dates as ISO).
"use strict";
const { opcuaJsonDecodeDataValue, opcuaJsonDecodeVariant } = require("node-opcua-json");

function canon(v) {
    if (v === null || v === undefined) return null;
    if (Buffer.isBuffer(v)) return "b64:" + v.toString("base64");
    if (v instanceof Date) return isNaN(v.getTime()) ? "invalid date" : v.toISOString();
    if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
    if (typeof v === "bigint") return v.toString();
    if (Array.isArray(v) || ArrayBuffer.isView(v)) return Array.from(v, canon);
    if (v.constructor && v.constructor.name === "LocalizedText") return { text: v.text, locale: v.locale };
    if (v.constructor && v.constructor.name === "QualifiedName") return v.namespaceIndex + ":" + v.name;
    if (v.constructor && v.constructor.name === "ConstantStatusCode") return v.value;
    if (typeof v.value === "number" && typeof v.name === "string") return v.value; // StatusCode
    if (v.constructor && /NodeId$/.test(v.constructor.name)) return v.toString();
    if (v.constructor && v.constructor.name === "Variant") return { type: v.dataType, value: canonVariant(v) };
    if (v.constructor && v.constructor.name === "DataValue") return { status: v.statusCode.value, type: v.value.dataType, value: canonVariant(v.value) };
    return JSON.parse(JSON.stringify(v));
}

// canonVariant: Int64 and UInt64 come as [high, low] pairs of UInt32.
function canonVariant(variant) {
    const t = variant.dataType;
    const pair = (p) => {
        if (!Array.isArray(p)) return canon(p);
        let big = (BigInt(p[0] >>> 0) << 32n) + BigInt(p[1] >>> 0);
        if (t === 8 && big >= 1n << 63n) big -= 1n << 64n;
        return big.toString();
    };
    if (t === 8 || t === 9) {
        if (variant.arrayType === 0) return pair(variant.value);
        return Array.from(variant.value, pair);
    }
    return canon(variant.value);
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
    const out = [];
    for (const { name, field } of JSON.parse(input)) {
        try {
            const dv = opcuaJsonDecodeDataValue(field);
            // opcuaJsonDecodeDataValue skips a Value that is falsy (0,
            // false, ""); the Variant decoder itself does not.
            const variant = "UaType" in field ? opcuaJsonDecodeVariant(field) : dv.value;
            out.push({
                name,
                type: variant.dataType,
                array: variant.arrayType,
                dims: variant.dimensions || null,
                dvType: dv.value ? dv.value.dataType : 0,
                status: dv.statusCode.value,
                source: dv.sourceTimestamp ? dv.sourceTimestamp.toISOString() : null,
                value: canonVariant(variant),
            });
        } catch (err) {
            out.push({ name, error: String(err && err.message ? err.message : err) });
        }
    }
    process.stdout.write(JSON.stringify(out));
});
