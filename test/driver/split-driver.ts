// Moved to src/driver/; kept while other work moves over.
export * from "../../src/driver/split-driver.js";
