// tagbridge's Sparkplug B test decoder: Eclipse Tahu's sparkplug-payload
// (npm) decodes what tagbridge publishes, as a host would.
//
// stdin: one JSON object per line, {"topic": "...", "payload": "<base64>"}.
// stdout: one JSON object per line, {"payload": <decoded>} or
// {"error": "..."}. 64-bit integers (long.js Longs) are written as decimal
// strings.
//
// sparkplug-payload decodes a value by its metric's datatype, which DDATA
// leaves out: like a host, this keeps each node's and device's aliases and
// datatypes from its births, and gives a DDATA metric the datatype of its
// alias before decoding. An alias not in the births, and a birth metric
// without a known datatype, are errors (Tahu's Java host throws on them).
"use strict";

const readline = require("readline");
const Long = require("long");
const sparkplug = require("sparkplug-payload").get("spBv1.0");
const proto = require("sparkplug-payload/lib/sparkplugPayloadProto");

const Payload = proto.org.eclipse.tahu.protobuf.Payload;
const types = new Map(); // "group/node" -> Map(alias -> datatype), births of the node and its devices

function handle(msg) {
	const levels = msg.topic.split("/");
	if (levels.length < 4 || levels[0] !== "spBv1.0") {
		throw new Error(`not a Sparkplug topic: ${msg.topic}`);
	}
	const kind = levels[2];
	const node = levels[1] + "/" + levels[3];
	const buf = Buffer.from(msg.payload, "base64");
	const raw = Payload.decode(buf);
	if (kind === "NBIRTH") {
		types.set(node, new Map());
	}
	if (kind === "NBIRTH" || kind === "DBIRTH") {
		const known = types.get(node);
		if (!known) {
			throw new Error(`${kind} before the node's NBIRTH`);
		}
		for (const m of raw.metrics) {
			if (!m.datatype) {
				throw new Error(`${kind} metric ${m.name}: datatype Unknown`);
			}
			if (has(m, "alias")) {
				known.set(Long.fromValue(m.alias).toString(), m.datatype);
			}
		}
	}
	if (kind === "DDATA" || kind === "NDATA") {
		const known = types.get(node) || new Map();
		for (const m of raw.metrics) {
			const dt = has(m, "alias") ? known.get(Long.fromValue(m.alias).toString()) : undefined;
			if (dt === undefined) {
				throw new Error(`${kind} metric with alias ${m.alias}, which no birth announced`);
			}
			m.datatype = dt;
		}
	}
	// Decode with sparkplug-payload proper, datatypes filled in.
	return sparkplug.decodePayload(Payload.encode(raw).finish());
}

function has(obj, field) {
	return Object.prototype.hasOwnProperty.call(obj, field);
}

function replacer(_key, value) {
	if (Long.isLong(value)) {
		return value.toString();
	}
	if (value && value.type === "Buffer" && Array.isArray(value.data)) {
		return { bytes: Buffer.from(value.data).toString("hex") };
	}
	return value;
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
	let out;
	try {
		out = { payload: handle(JSON.parse(line)) };
	} catch (err) {
		out = { error: String(err && err.message || err) };
	}
	process.stdout.write(JSON.stringify(out, replacer) + "\n");
});
