import { HttpsTransport } from "../../transports/https.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({
  name: "HttpsTransport",
  protocol: "https",
  create: (o) => new HttpsTransport(o),
});
