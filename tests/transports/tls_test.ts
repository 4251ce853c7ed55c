import { TlsTransport } from "../../src/transports/tls.ts";
import { runTransportContract } from "./_contract.ts";
import { runStreamCases } from "./_stream_cases.ts";

runTransportContract({ name: "TlsTransport", protocol: "tls", create: (o) => new TlsTransport(o) });
runStreamCases("tls");
