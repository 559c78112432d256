/**
 * `ProvisionResponse.server_endpoint` (field 1) was once a single string. A client built then
 * reads only the last value of the repeated field, so servers move the preferred endpoint (the
 * first) to the end by swapping the first and last entries, and current clients swap them back.
 * With zero or one entries there is nothing to swap.
 */

/** Server side: the endpoints in preference order, as they go on the wire. */
export function endpointsToWire(preferred: readonly string[]): string[] {
  return swapFirstAndLast(preferred);
}

/** Client side: the endpoints from the wire, back in preference order. */
export function endpointsFromWire(wire: readonly string[]): string[] {
  return swapFirstAndLast(wire);
}

function swapFirstAndLast(endpoints: readonly string[]): string[] {
  const swapped = endpoints.slice();
  const last = swapped.length - 1;
  if (last > 0) [swapped[0], swapped[last]] = [swapped[last], swapped[0]];
  return swapped;
}
