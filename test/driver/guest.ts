// Moved to src/driver/; kept while other work moves over.
export * from "../../src/driver/simulated-guest.js";
export { SimulatedGuest as TestGuest } from "../../src/driver/simulated-guest.js";
