package main

// scenarios lists every benchmark; each issue that makes a speed claim adds one here.
func scenarios() []Scenario {
	return []Scenario{
		hashScenario(),
		serveScenario(true),
		serveScenario(false),
		sync2GScenario(),
		manyScenario("first"),
		manyScenario("noop"),
		manyScenario("verify"),
		fetch2GScenario(),
		lanScenario(),
		lanSimScenario(),
		deltaScenario(),
	}
}

func findScenario(name string) (Scenario, bool) {
	for _, s := range scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

func scenarioNames() []string {
	var n []string
	for _, s := range scenarios() {
		n = append(n, s.Name)
	}
	return n
}
