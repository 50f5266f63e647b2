// A TypeScript handler with npm packages (declared in function.json): zod
// validates the input, date-fns does the date arithmetic. The packages are
// resolved to exact versions, checked against their integrity hashes and
// bundled into the function when it is built.

import { z } from "zod";
import { differenceInYears, parseISO } from "date-fns";

const Signup = z.object({
  email: z.string().email(),
  birthDate: z.string().date(),
  today: z.string().date(),
});

export default function handler(input: unknown) {
  const parsed = Signup.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join(".") || "input"}: ${issue.message}`,
    );
    throw new Error(problems.join("; "));
  }
  const { email, birthDate, today } = parsed.data;
  const age = differenceInYears(parseISO(today), parseISO(birthDate));
  return { email: email.toLowerCase(), age, adult: age >= 18 };
}
