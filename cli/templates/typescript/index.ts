// {{name}}: a Plat function.
//
// Plat calls the default export with the request's JSON input and answers
// with what it returns (or what its promise resolves to), as JSON. Throwing
// fails the run with the error's message. console.log writes to the run's
// logs. Types are stripped, not checked; the function is this one file.

interface Input {
  name?: string;
}

export default function handler(input: Input | null) {
  const name = input?.name ?? "world";
  console.log(`greeting ${name}`);
  return { greeting: `Hello, ${name}!` };
}
