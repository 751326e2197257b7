#!/usr/bin/env node
// server.js: tagbridge's secure OPC UA test peer, a node-opcua server.
//
// gopcua's server cannot serve secured endpoints, so the tests of secured
// sessions run against this one. It serves the same variables as
// scripts/plcsim (node ids ns=1;s=Int32.0001 and so on, namespace
// urn:tagbridge:plcsim) with the security policies, modes, users and
// certificates that a test asks for.
//
// Once it listens it prints exactly one line "READY opc.tcp://HOST:PORT" to
// stdout; everything else, node-opcua's own messages included, goes to
// stderr. It stops on SIGINT or SIGTERM.
//
// Usage: node server.js [-config FILE.json] [flags]; node server.js -h lists
// the flags. A JSON config file holds an object whose keys are flag names
// ({"port": 0, "policies": ["Basic256Sha256"], "users": ["op:secret"]});
// flags given on the command line override it.
"use strict";

// node-opcua logs with console.log; stdout is only for the READY line.
const stdoutWrite = process.stdout.write.bind(process.stdout);
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

// Every flag: name, kind (string, int, duration, bool, list) and default.
// Durations are numbers of milliseconds or Go-style strings ("100ms", "3s").
const flags = {
	config: { kind: "string", def: "", help: "JSON file with flag values (keys are flag names); command-line flags override it" },
	host: { kind: "string", def: "127.0.0.1", help: "address to listen on" },
	hostname: { kind: "string", def: "", help: "host name in the advertised endpoint URLs (default: -host)" },
	port: { kind: "int", def: 0, help: "TCP port; 0 picks a free one (the READY line carries the real port)" },
	tags: { kind: "int", def: 8, help: "number of variables; variable i is a Double, Int32, Boolean or String by i%4" },
	interval: { kind: "duration", def: 100, help: "time between changes; every variable changes each time" },
	start: { kind: "int", def: 0, help: "value of the Int32 counters before the first change" },
	policies: {
		kind: "list",
		def: ["None", "Basic256Sha256"],
		help: "security policies to offer: None, Basic128Rsa15, Basic256, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss",
	},
	modes: { kind: "list", def: ["None", "Sign", "SignAndEncrypt"], help: "security modes to offer: None, Sign, SignAndEncrypt (None/None is offered when None is in both lists)" },
	anonymous: { kind: "bool", def: true, help: "offer and accept anonymous login" },
	user: { kind: "list", def: [], help: "a user NAME:PASSWORD; repeat the flag or separate with commas (alias: users)" },
	"x509-users": { kind: "bool", def: false, help: "offer and accept X.509 certificate user tokens" },
	pki: { kind: "string", def: "", help: "PKI folder (own/, trusted/, issuers/, rejected/) for the server's certificate and the client certificates it sees (default: a temporary folder)" },
	"user-pki": { kind: "string", def: "", help: "PKI folder for X.509 user certificates (default: PKI/users)" },
	"trust-unknown": { kind: "bool", def: true, help: "trust every client (and user) certificate it does not know; -trust-unknown=false requires the certificate in trusted/certs" },
	cert: { kind: "string", def: "", help: "server certificate file (PEM or DER); default: PKI/own/certs/certificate.pem, generated when missing" },
	key: { kind: "string", def: "", help: "server private key file (PEM); default: PKI/own/private/private_key.pem, generated when missing" },
	"application-uri": { kind: "string", def: "urn:tagbridge:opcua-peer", help: "the server's ApplicationURI (a generated certificate carries it as URI SAN)" },
	"max-sessions": { kind: "int", def: 10, help: "maximum number of simultaneous sessions" },
	"max-connections": { kind: "int", def: 20, help: "maximum number of simultaneous connections (secure channels)" },
	"max-browse-continuation-points": { kind: "int", def: 0, help: "browse continuation points a session may hold (0: no limit)" },
	"token-lifetime": { kind: "duration", def: 600000, help: "secure channel token lifetime: the default and the maximum a client can get" },
	"min-token-lifetime": { kind: "duration", def: 2500, help: "the minimum token lifetime a client can get (node-opcua's default 2.5s)" },
	debug: { kind: "bool", def: false, help: "log every session and channel event" },
	// Real PLCs' limits and habits (issue 19).
	"max-nodes-per-read": { kind: "int", def: 0, help: "OperationLimits MaxNodesPerRead; a larger Read is refused with BadTooManyOperations (0: no limit)" },
	"max-nodes-per-browse": { kind: "int", def: 0, help: "OperationLimits MaxNodesPerBrowse; a larger Browse is refused with BadTooManyOperations (0: no limit)" },
	"max-items-per-call": { kind: "int", def: 0, help: "OperationLimits MaxMonitoredItemsPerCall (0: no limit)" },
	"max-items-per-subscription": { kind: "int", def: 0, help: "ServerCapabilities MaxMonitoredItemsPerSubscription, as advertised (0: node-opcua's default)" },
	"max-subscriptions-per-session": { kind: "int", def: 0, help: "ServerCapabilities MaxSubscriptionsPerSession, advertised and enforced (0: node-opcua's default 10)" },
	"max-subscriptions": { kind: "int", def: 0, help: "subscriptions of all sessions together, enforced with BadTooManySubscriptions, not advertised per session (0: node-opcua's default)" },
	"max-publish-requests": { kind: "int", def: 0, help: "PublishRequests a session may queue; the oldest beyond it is answered BadTooManyPublishRequests, as Rockwell and Beckhoff PLCs do (0: node-opcua's default 100)" },
	"no-transfer": { kind: "bool", def: false, help: "answer TransferSubscriptions with BadServiceUnsupported, as Siemens and B&R PLCs do" },
	"no-republish": { kind: "bool", def: false, help: "answer Republish with BadServiceUnsupported" },
	reverse: { kind: "string", def: "", help: "reverse connect: dial this client listener (opc.tcp://HOST:PORT) and send ReverseHello, again whenever the channel ends" },
	"reverse-delay": { kind: "duration", def: 200, help: "time before the reverse connection is dialled again" },
	historize: { kind: "bool", def: false, help: "historize the Int32 counters in memory (HistoryRead raw, Historizing true)" },
	"renumber-after": { kind: "duration", def: 0, help: "after this time, act as a program download that renumbers namespaces: the variables move to a new namespace index that takes over urn:tagbridge:plcsim (0: never)" },
	writable: { kind: "bool", def: false, help: "also serve ns=1;s=W.<Type> variables (Boolean, Int32, UInt16, Float, Double, String, DateTime, DoubleArray, DoubleMatrix 2x3; with -structures Setpoint and SetpointArray) that hold what is written, and the method ns=1;s=Machine.Scale(Double x, Int32 factor) -> Double" },
	alarms: { kind: "bool", def: false, help: "also raise alarms: ns=1;s=Tank (an event source of the Server) with LevelHigh (AlarmConditionType, active and unacknowledged from the start, severity 700) and Pump (raised, acknowledged and cleared again every -alarm-cycle)" },
	"alarm-cycle": { kind: "duration", def: 3000, help: "with -alarms: Pump is raised at the start of each cycle, acknowledged after a third, cleared after two thirds" },
	structures: { kind: "bool", def: false, help: "also serve structured values (structures.xml's types, with DataTypeDefinition): ns=1;s=Struct.Recipe, Struct.Setpoints, Struct.Reading, Struct.Mode" },
};
const policyNames = ["None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"];
const modeNames = ["None", "Sign", "SignAndEncrypt"];
const aliases = { users: "user", "allow-anonymous": "anonymous" };

function usage() {
	const lines = ["Usage: node server.js [flags]", "", "tagbridge's OPC UA test peer (node-opcua). Prints \"READY <endpoint>\" to stdout once it listens.", "", "Flags (-name value, -name=value or --name value; booleans also -name, -name=false):"];
	for (const [name, f] of Object.entries(flags)) {
		const def = f.kind === "list" ? f.def.join(",") : f.kind === "duration" ? `${f.def}ms` : String(f.def);
		lines.push(`  -${name} ${f.kind}\t${f.help}${def !== "" ? ` (default ${def})` : ""}`);
	}
	process.stderr.write(lines.join("\n") + "\n");
}

function parseDuration(name, v) {
	if (typeof v === "number") return v;
	const s = String(v).trim();
	if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
	const units = { ms: 1, s: 1000, m: 60000, h: 3600000 };
	let total = 0;
	let rest = s;
	while (rest.length > 0) {
		const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
		if (!m) throw new Error(`-${name}: ${JSON.stringify(v)} is not a duration such as 100ms or 3s`);
		total += Number(m[1]) * units[m[2]];
		rest = rest.slice(m[0].length);
	}
	return total;
}

function coerce(name, v) {
	const f = flags[name];
	switch (f.kind) {
		case "string":
			return String(v);
		case "int": {
			const n = Number(v);
			if (!Number.isInteger(n)) throw new Error(`-${name}: ${JSON.stringify(v)} is not an integer`);
			return n;
		}
		case "duration":
			return parseDuration(name, v);
		case "bool":
			if (v === true || v === "true" || v === "1") return true;
			if (v === false || v === "false" || v === "0") return false;
			throw new Error(`-${name}: ${JSON.stringify(v)} is not true or false`);
		case "list":
			return (Array.isArray(v) ? v : String(v).split(",")).map((s) => String(s).trim()).filter((s) => s !== "");
	}
	throw new Error(`-${name}: unknown kind`);
}

function parseArgs(argv) {
	const given = {}; // from the command line
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		if (a === "-h" || a === "-help" || a === "--help") {
			usage();
			process.exit(0);
		}
		const m = /^--?([a-z0-9-]+)(?:=(.*))?$/.exec(a);
		if (!m) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
		const name = aliases[m[1]] || m[1];
		const f = flags[name];
		if (!f) throw new Error(`unknown flag -${m[1]}`);
		let v = m[2];
		if (v === undefined) {
			if (f.kind === "bool") v = true;
			else if (i + 1 < argv.length) v = argv[++i];
			else throw new Error(`-${name}: missing value`);
		}
		v = coerce(name, v);
		given[name] = f.kind === "list" && given[name] ? given[name].concat(v) : v;
	}
	const o = {};
	for (const [name, f] of Object.entries(flags)) o[name] = f.def;
	const file = given.config;
	if (file) {
		const cfg = JSON.parse(fs.readFileSync(file, "utf8"));
		for (const [k, v] of Object.entries(cfg)) {
			const name = aliases[k] || k;
			if (!flags[name] || name === "config") throw new Error(`${file}: unknown key ${JSON.stringify(k)}`);
			o[name] = coerce(name, v);
		}
	}
	Object.assign(o, given);
	if (o.port < 0 || o.port > 65535) throw new Error(`-port: ${o.port} is not a TCP port`);
	if (o.tags < 0) throw new Error(`-tags: ${o.tags} is negative`);
	if (!(o.interval > 0)) throw new Error(`-interval: must be positive`);
	if (o.start < -2147483648 || o.start > 2147483647) throw new Error(`-start: ${o.start} does not fit an Int32`);
	if (o["max-sessions"] < 1) throw new Error(`-max-sessions: must be at least 1`);
	if (!(o["token-lifetime"] > 0)) throw new Error(`-token-lifetime: must be positive`);
	if (o["min-token-lifetime"] > o["token-lifetime"]) throw new Error(`-min-token-lifetime: longer than -token-lifetime`);
	for (const name of o.policies) {
		if (!policyNames.includes(name)) throw new Error(`-policies: unknown security policy ${JSON.stringify(name)} (want ${policyNames.join(", ")})`);
	}
	for (const name of o.modes) {
		if (!modeNames.includes(name)) throw new Error(`-modes: unknown security mode ${JSON.stringify(name)} (want ${modeNames.join(", ")})`);
	}
	if (o.policies.length === 0 || o.modes.length === 0) throw new Error("-policies and -modes must not be empty");
	if (!o.hostname) o.hostname = o.host;
	if ((o.cert === "") !== (o.key === "")) throw new Error(`-cert and -key: give both or neither`);
	for (const u of o.user) {
		if (u.indexOf(":") <= 0) throw new Error(`-user: ${JSON.stringify(u.split(":")[0])}: want NAME:PASSWORD`);
	}
	return o;
}

let opts;
try {
	opts = parseArgs(process.argv.slice(2));
} catch (err) {
	process.stderr.write(`opcua-peer: ${err.message}\n`);
	process.exit(2);
}

function log(...args) {
	process.stderr.write(`${new Date().toISOString()} opcua-peer: ${args.join(" ")}\n`);
}

const opcua = require("node-opcua");
const { OPCUAServer, OPCUACertificateManager, SecurityPolicy, MessageSecurityMode, UserTokenType, DataType, Variant, StatusCodes, ServerSecureChannelLayer } =
	opcua;

const namespaceURI = "urn:tagbridge:plcsim";
const kinds = [
	{ name: "Double", dataType: DataType.Double },
	{ name: "Int32", dataType: DataType.Int32 },
	{ name: "Boolean", dataType: DataType.Boolean },
	{ name: "String", dataType: DataType.String },
];

function policyOf(name) {
	return SecurityPolicy[name];
}

function modeOf(name) {
	return MessageSecurityMode[name];
}

let tmpPKI = "";

async function main() {
	const policies = opts.policies.map(policyOf);
	const modes = opts.modes.map(modeOf);

	let pki = opts.pki;
	if (!pki) {
		pki = tmpPKI = fs.mkdtempSync(path.join(os.tmpdir(), "opcua-peer-pki-"));
	}
	pki = path.resolve(pki);
	const userPKI = path.resolve(opts["user-pki"] || path.join(pki, "users"));
	const serverCertificateManager = new OPCUACertificateManager({
		rootFolder: pki,
		automaticallyAcceptUnknownCertificate: opts["trust-unknown"],
		disableFileWatchers: false, // a test may move a certificate from rejected/ to trusted/
	});
	const userCertificateManager = new OPCUACertificateManager({
		rootFolder: userPKI,
		automaticallyAcceptUnknownCertificate: opts["trust-unknown"],
	});

	// node-opcua revises a requested token lifetime into
	// [g_MinimumSecureTokenLifetime, defaultSecureTokenLifetime] and gives
	// defaultSecureTokenLifetime to a client that asks for 0.
	ServerSecureChannelLayer.g_MinimumSecureTokenLifetime = opts["min-token-lifetime"];
	logTokens();

	const users = new Map(opts.user.map((u) => [u.slice(0, u.indexOf(":")), u.slice(u.indexOf(":") + 1)]));

	if (opts["max-publish-requests"]) opcua.ServerSession.maxPublishRequestInQueue = opts["max-publish-requests"];
	const serverOptions = {
		host: opts.host,
		hostname: opts.hostname,
		// Not a second host name (node-opcua drops the duplicate), but the
		// way to get it into the SAN of a generated certificate, as an IP
		// address when it is one: node-opcua puts the machine's host name
		// and interface addresses there, never 127.0.0.1.
		alternateHostname: [opts.hostname],
		port: opts.port,
		securityPolicies: policies,
		securityModes: modes,
		allowAnonymous: opts.anonymous,
		serverCertificateManager,
		userCertificateManager,
		serverInfo: {
			applicationUri: opts["application-uri"],
			productUri: "urn:tagbridge:opcua-peer",
			applicationName: { text: "tagbridge opcua-peer", locale: "en" },
		},
		buildInfo: { productName: "tagbridge opcua-peer", manufacturerName: "tagbridge" },
		userManager: {
			isValidUser(username, password) {
				const ok = users.has(username) && users.get(username) === password;
				log(`user ${JSON.stringify(username)}: ${ok ? "accepted" : "refused"}`);
				return ok;
			},
		},
		maxConnectionsPerEndpoint: opts["max-connections"],
		serverCapabilities: {
			maxSessions: opts["max-sessions"],
			maxBrowseContinuationPoints: opts["max-browse-continuation-points"],
			// 0: a monitored item that asks for sampling interval 0 gets
			// every change (the variables' MinimumSamplingInterval is 0).
			minSupportedSampleRate: 0,
			maxSubscriptionsPerSession: opts["max-subscriptions-per-session"] || undefined,
			maxMonitoredItemsPerSubscription: opts["max-items-per-subscription"] || undefined,
			maxSubscriptions: opts["max-subscriptions"] || undefined,
			operationLimits: {
				maxNodesPerRead: opts["max-nodes-per-read"] || undefined,
				maxNodesPerBrowse: opts["max-nodes-per-browse"] || undefined,
				maxMonitoredItemsPerCall: opts["max-items-per-call"] || undefined,
			},
		},
		historyServerCapabilities: { accessHistoryDataCapability: opts.historize },
		defaultSecureTokenLifetime: opts["token-lifetime"],
		skipOwnNamespace: true,
		nodeset_filename: opts.structures ? [opcua.nodesets.standard, path.join(__dirname, "structures.xml")] : [opcua.nodesets.standard],
		isAuditing: false,
	};
	if (opts.cert) {
		serverOptions.certificateFile = path.resolve(opts.cert);
		serverOptions.privateKeyFile = path.resolve(opts.key);
	}
	if (opts.reverse) {
		serverOptions.reverseConnect = { connections: [{ endpointUrl: opts.reverse }], reconnectDelay: opts["reverse-delay"], maxReconnectDelay: opts["reverse-delay"] };
	}
	refuseServices();
	const server = new OPCUAServer(serverOptions);
	await server.initialize();
	// OPCUAServer does not hand historyServerCapabilities to its engine.
	server.engine.historyServerCapabilities.accessHistoryDataCapability = opts.historize;

	// Offer only the user token types asked for: node-opcua offers user
	// name and certificate tokens on every endpoint.
	const offered = new Set();
	if (opts.anonymous) offered.add(UserTokenType.Anonymous);
	if (users.size > 0) offered.add(UserTokenType.UserName);
	if (opts["x509-users"]) offered.add(UserTokenType.Certificate);
	for (const ep of server.endpoints) {
		for (const d of ep.endpointDescriptions()) {
			d.userIdentityTokens = (d.userIdentityTokens || []).filter((t) => offered.has(t.tokenType));
		}
	}

	addVariables(server);
	renumberLater(server);

	await server.start();

	// One write, after listening: the endpoint carries the real port.
	const url = server.getEndpointUrl().replace(/\/$/, "");
	stdoutWrite(`READY ${url}\n`);
	log(
		`listening on ${url}: policies ${opts.policies.join(",")}, modes ${opts.modes.join(",")}, anonymous ${opts.anonymous}, users ${users.size}, x509 users ${opts["x509-users"]}, ` +
			`trust unknown ${opts["trust-unknown"]}, pki ${pki}, application uri ${opts["application-uri"]}, token lifetime ${opts["min-token-lifetime"]}..${opts["token-lifetime"]} ms, ` +
			`${opts.tags} tags every ${opts.interval} ms`,
	);

	server.on("create_session", (s) => log(`session created: ${s.sessionName || ""} (${s.channel && s.channel.securityPolicy} ${s.channel && MessageSecurityMode[s.channel.securityMode]})`));
	server.on("session_activated", (s, token) => log(`session activated: ${token && token.constructor ? token.constructor.name : "?"}`));
	server.on("session_closed", () => log("session closed"));
	server.on("newChannel", (ch) => log(`channel ${ch.channelId} opened`));
	server.on("closeChannel", (ch) => log(`channel ${ch.channelId} closed`));
	if (opts.debug) {
		server.on("request", (req, ch) => log(`request ${req.constructor.name} on channel ${ch.channelId}`));
	}

	let stopping = false;
	const stop = async (sig) => {
		if (stopping) return;
		stopping = true;
		log(`${sig}: stopping`);
		clearInterval(ticker);
		if (alarmTimer) clearInterval(alarmTimer);
		const timer = setTimeout(() => {
			log("shutdown took longer than 5s; exiting");
			cleanup();
			process.exit(0);
		}, 5000);
		try {
			await server.shutdown(0);
		} catch (err) {
			log(`shutdown: ${err.message}`);
		}
		clearTimeout(timer);
		cleanup();
		log("stopped");
		process.exit(0);
	};
	process.on("SIGTERM", () => stop("SIGTERM"));
	process.on("SIGINT", () => stop("SIGINT"));

	let counter = opts.start;
	const ticker = setInterval(() => {
		counter = counter >= 2147483647 ? -2147483648 : counter + 1;
		setValues(counter, new Date());
	}, opts.interval);
}

// refuseServices answers the services a test asks the peer to lack with
// BadServiceUnsupported, as a PLC without them does.
function refuseServices() {
	const refuse = (name, method) => {
		OPCUAServer.prototype[method] = function (message, channel) {
			log(`${name} refused: BadServiceUnsupported`);
			channel.send_response("MSG", new opcua.ServiceFault({ responseHeader: { serviceResult: StatusCodes.BadServiceUnsupported } }), message);
		};
	};
	if (opts["no-transfer"]) refuse("TransferSubscriptions", "_on_TransferSubscriptionsRequest");
	if (opts["no-republish"]) refuse("Republish", "_on_RepublishRequest");
}

// logTokens logs every security token handed out, so that a test can see
// the revised lifetime and the renewals: node-opcua has no event for them,
// so this wraps the method that sends the OpenSecureChannel response.
function logTokens() {
	const send = ServerSecureChannelLayer.prototype.send_response;
	ServerSecureChannelLayer.prototype.send_response = function (msgType, response, message, ...rest) {
		if (msgType === "OPN" && response && response.securityToken) {
			const tok = response.securityToken;
			const req = message && message.request;
			const kind = req && req.requestType === 1 ? "Renew" : "Issue";
			log(
				`token: channel ${tok.channelId} token ${tok.tokenId} ${kind} requested ${req ? req.requestedLifetime : "?"} ms revised ${tok.revisedLifetime} ms created ${tok.createdAt.toISOString()}`,
			);
		}
		return send.call(this, msgType, response, message, ...rest);
	};
}

let variables = [];

// historized tells the variables whose history the peer keeps: the Int32 counters, with -historize.
const historized = (kind) => opts.historize && kind.name === "Int32";

function addVariables(server) {
	const addressSpace = server.engine.addressSpace;
	// structures.xml, when loaded, has already made the namespace.
	const ns = addressSpace.getNamespace(namespaceURI) || addressSpace.registerNamespace(namespaceURI);
	if (ns.index !== 1) throw new Error(`namespace ${namespaceURI} got index ${ns.index}, want 1`);
	const folder = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "PLCSim", nodeId: "s=PLCSim" });
	const width = Math.max(4, String(Math.max(opts.tags - 1, 0)).length);
	for (let i = 0; i < opts.tags; i++) {
		const k = kinds[i % 4];
		const sid = `${k.name}.${String(i).padStart(width, "0")}`;
		const v = ns.addVariable({
			componentOf: folder,
			nodeId: `s=${sid}`,
			browseName: sid,
			displayName: sid,
			description: `simulated ${k.name}`,
			dataType: k.name,
			minimumSamplingInterval: 0, // exception-based: every change is reported
			accessLevel: historized(k) ? "CurrentRead | HistoryRead" : "CurrentRead",
			userAccessLevel: historized(k) ? "CurrentRead | HistoryRead" : "CurrentRead",
		});
		if (historized(k)) addressSpace.installHistoricalDataNode(v, { maxOnlineValues: 100000 });
		variables.push({ index: i, kind: k, node: v });
	}
	if (opts.structures) addStructures(addressSpace, ns, folder);
	if (opts.alarms) addAlarms(addressSpace, ns);
	if (opts.writable) addWritable(ns, folder);
	setValues(opts.start, new Date());
}

// addWritable serves variables that keep what a client writes (node-opcua
// refuses a value of another type with BadTypeMismatch) and a method with
// arguments (issue 17).
function addWritable(ns, folder) {
	const types = [["Boolean", false], ["Int32", 0], ["UInt16", 0], ["Float", 0], ["Double", 0], ["String", ""], ["DateTime", new Date(0)]];
	const add = (name, dataType, value, valueRank) => {
		const v = ns.addVariable({
			componentOf: folder,
			nodeId: `s=W.${name}`,
			browseName: `W.${name}`,
			dataType,
			valueRank,
			arrayDimensions: valueRank === 1 ? [0] : undefined,
			minimumSamplingInterval: 0,
			accessLevel: "CurrentRead | CurrentWrite",
			userAccessLevel: "CurrentRead | CurrentWrite",
		});
		v.setValueFromSource(new Variant({ dataType: DataType[dataType], value, arrayType: valueRank === 1 ? opcua.VariantArrayType.Array : undefined }));
	};
	for (const [name, value] of types) add(name, name, value, -1);
	add("DoubleArray", "Double", new Float64Array([]), 1);
	// A matrix, and with -structures a Setpoint and an array of them.
	const matrix = ns.addVariable({
		componentOf: folder,
		nodeId: "s=W.DoubleMatrix",
		browseName: "W.DoubleMatrix",
		dataType: "Double",
		valueRank: 2,
		arrayDimensions: [2, 3],
		minimumSamplingInterval: 0,
		accessLevel: "CurrentRead | CurrentWrite",
		userAccessLevel: "CurrentRead | CurrentWrite",
	});
	matrix.setValueFromSource(new Variant({ dataType: DataType.Double, arrayType: opcua.VariantArrayType.Matrix, dimensions: [2, 3], value: new Float64Array(6) }));
	if (structured) {
		const as = folder.addressSpace;
		const setpointType = structured.types.setpoint;
		const zero = () => as.constructExtensionObject(setpointType, { name: "", value: 0, limits: [] });
		for (const [name, valueRank] of [["Setpoint", -1], ["SetpointArray", 1]]) {
			const v = ns.addVariable({
				componentOf: folder,
				nodeId: `s=W.${name}`,
				browseName: `W.${name}`,
				dataType: setpointType,
				valueRank,
				minimumSamplingInterval: 0,
				accessLevel: "CurrentRead | CurrentWrite",
				userAccessLevel: "CurrentRead | CurrentWrite",
			});
			const value = valueRank === 1 ? [zero()] : zero();
			v.setValueFromSource(new Variant({ dataType: DataType.ExtensionObject, value, arrayType: valueRank === 1 ? opcua.VariantArrayType.Array : undefined }));
		}
	}

	const machine = ns.addObject({ organizedBy: folder, nodeId: "s=Machine", browseName: "Machine" });
	const scale = ns.addMethod(machine, {
		nodeId: "s=Machine.Scale",
		browseName: "Scale",
		inputArguments: [
			{ name: "x", dataType: DataType.Double },
			{ name: "factor", dataType: DataType.Int32 },
		],
		outputArguments: [{ name: "result", dataType: DataType.Double }],
	});
	scale.bindMethod((inputs, context, callback) => {
		const result = inputs[0].value * inputs[1].value;
		log(`Machine.Scale(${inputs[0].value}, ${inputs[1].value}) = ${result}`);
		callback(null, { statusCode: StatusCodes.Good, outputArguments: [{ dataType: DataType.Double, value: result }] });
	});
}

// addAlarms makes ns=1;s=Tank an event source of the Server object with
// two alarms: LevelHigh, active and unacknowledged from the start (so only
// a ConditionRefresh reports it to a client that subscribes later), and
// Pump, raised, acknowledged and cleared in every -alarm-cycle.
function addAlarms(addressSpace, ns) {
	addressSpace.installAlarmsAndConditionsService(); // binds ConditionRefresh, Acknowledge, ...
	const server = addressSpace.rootFolder.objects.server;
	const tank = ns.addObject({ browseName: "Tank", nodeId: "s=Tank", organizedBy: addressSpace.rootFolder.objects, eventNotifier: 1, eventSourceOf: server });
	const alarm = (name) =>
		ns.instantiateAlarmCondition("AlarmConditionType", {
			browseName: name,
			nodeId: `s=Tank.${name}`,
			componentOf: tank,
			conditionSource: tank,
			conditionName: name,
			inputNode: opcua.NodeId.nullNodeId,
		});
	const level = alarm("LevelHigh");
	level.activateAlarm();
	level.raiseNewCondition({ message: "level high", severity: 700, retain: true });
	const pump = alarm("Pump");
	const cycle = opts["alarm-cycle"];
	const run = () => {
		pump.activateAlarm();
		pump.raiseNewCondition({ message: "pump fault", severity: 500, retain: true });
		log("alarm Pump raised");
		setTimeout(() => {
			pump.acknowledgeAndAutoConfirmBranch(pump.currentBranch(), "acknowledged by the peer");
			log("alarm Pump acknowledged");
		}, cycle / 3);
		setTimeout(() => {
			pump.deactivateAlarm(false);
			pump.raiseNewCondition({ message: "pump ok", severity: 100, retain: false });
			log("alarm Pump cleared");
		}, (2 * cycle) / 3);
	};
	alarmTimer = setInterval(run, cycle);
}

let alarmTimer = null;

let structured = null;

// addStructures serves values of structures.xml's types: a Recipe (nested
// Setpoint array, optional fields, an enumeration, a LocalizedText), an array
// of Setpoint, a Reading union and a Mode enumeration.
function addStructures(addressSpace, ns, folder) {
	const type = (name) => addressSpace.findDataType(name, ns.index);
	const add = (name, dataType, valueRank) =>
		ns.addVariable({
			componentOf: folder,
			nodeId: `s=Struct.${name}`,
			browseName: `Struct.${name}`,
			dataType,
			valueRank,
			minimumSamplingInterval: 0,
			accessLevel: "CurrentRead",
			userAccessLevel: "CurrentRead",
		});
	structured = {
		types: { recipe: type("Recipe"), setpoint: type("Setpoint"), reading: type("Reading") },
		recipe: add("Recipe", type("Recipe"), -1),
		setpoints: add("Setpoints", type("Setpoint"), 1),
		reading: add("Reading", type("Reading"), -1),
		mode: add("Mode", type("Mode"), -1),
	};
}

// setStructures gives the structured variables their values for the counter:
// the Recipe's RecipeId is the counter, its optional Comment is there on even
// counters only, the Reading union holds Count on even counters and Text on
// odd ones.
function setStructures(counter, now) {
	const as = structured.recipe.addressSpace;
	const even = counter % 2 === 0;
	const setpoint = (name, value) => as.constructExtensionObject(structured.types.setpoint, { name, value, limits: [0, value * 2] });
	const setpoints = [setpoint("feed", 1.5), setpoint("heat", 180.25)];
	const recipe = as.constructExtensionObject(structured.types.recipe, {
		recipeId: counter >>> 0,
		mode: 5,
		setpoints,
		comment: even ? `batch ${counter}` : undefined,
		title: { text: "Brot", locale: "de-DE" },
	});
	const reading = as.constructExtensionObject(structured.types.reading, even ? { switchField: 1, count: counter } : { switchField: 2, text: `t${counter}` });
	const set = (node, dataType, value, arrayType) => node.setValueFromSource(new Variant({ dataType, value, arrayType }), StatusCodes.Good, now);
	set(structured.recipe, DataType.ExtensionObject, recipe);
	set(structured.setpoints, DataType.ExtensionObject, setpoints, opcua.VariantArrayType.Array);
	set(structured.reading, DataType.ExtensionObject, reading);
	set(structured.mode, DataType.Int32, even ? 1 : 5);
}

// renumberLater moves the variables, after -renumber-after, to a new
// namespace that takes over the URI of theirs, as a PLC program download
// may renumber namespaces: ns=1 keeps its old variables, which no longer
// change; the same node ids under the URI now live at another index.
function renumberLater(server) {
	if (!(opts["renumber-after"] > 0)) return;
	setTimeout(() => {
		const as = server.engine.addressSpace;
		const old = as.getNamespace(namespaceURI);
		const moved = as.registerNamespace("urn:tagbridge:plcsim:renumbered");
		const folder = moved.addFolder(as.rootFolder.objects, { browseName: "PLCSimRenumbered" });
		variables = variables.map((t) => ({
			...t,
			node: moved.addVariable({
				componentOf: folder,
				nodeId: `s=${t.node.nodeId.value}`,
				browseName: t.node.browseName.name,
				dataType: t.kind.name,
				minimumSamplingInterval: 0,
				accessLevel: "CurrentRead",
				userAccessLevel: "CurrentRead",
			}),
		}));
		old.namespaceUri = "urn:tagbridge:plcsim:before-download";
		moved.namespaceUri = namespaceURI;
		log(`namespaces renumbered: ${namespaceURI} is index ${moved.index} now`);
	}, opts["renumber-after"]);
}

// setValues gives every variable its value for the counter, as plcsim does.
function setValues(counter, now) {
	const even = counter % 2 === 0;
	for (const t of variables) {
		let value;
		switch (t.index % 4) {
			case 0:
				value = Math.round(100 * Math.sin(counter / 10 + t.index / 7) * 1000) / 1000;
				break;
			case 1:
				value = counter;
				break;
			case 2:
				value = t.index % 8 === 6 ? !even : even;
				break;
			case 3:
				value = `v${counter}`;
				break;
		}
		t.node.setValueFromSource(new Variant({ dataType: t.kind.dataType, value }), StatusCodes.Good, now);
	}
	if (structured) setStructures(counter, now);
}

function cleanup() {
	if (tmpPKI) {
		fs.rmSync(tmpPKI, { recursive: true, force: true });
		tmpPKI = "";
	}
}

main().catch((err) => {
	log(`start: ${err && err.stack ? err.stack : err}`);
	cleanup();
	process.exit(1);
});
